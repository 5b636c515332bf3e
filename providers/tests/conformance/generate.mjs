// The conformance cases of the GitHub and Shopify schemes, answered by the providers' own JavaScript libraries
// (@octokit/webhooks-methods `verify`, @shopify/shopify-api `webhooks.validate`). See generate.py for the
// Python libraries and for how to run both; this writes github.json and shopify.json into $OUT.
import { readFileSync, writeFileSync } from "node:fs";
import { sign, verify } from "@octokit/webhooks-methods";
import "@shopify/shopify-api/adapters/web-api";
import { shopifyApi, ApiVersion } from "@shopify/shopify-api";

const OUT = process.env.OUT ?? ".";
const NOW = 1764234000;
const BODY = '{"id":"evt_1","type":"invoice.paid","data":{"object":{"id":"in_1","note":"Zoë 🚀"}}}';
const versionOf = (name) => JSON.parse(readFileSync(`node_modules/${name}/package.json`, "utf8")).version;

// One value per name, repeated ones joined, as the Fetch API's Headers does.
const joined = (headers) => {
  const out = new Headers();
  for (const [k, v] of headers) out.append(k, v);
  return out;
};

const secretsToml = (...values) => `secrets = [${values.map((v) => `{ value = "${v}" }`).join(", ")}]`;

// The cases of one scheme: sign(secret, body) -> headers; check(headers, body, secret) -> the library's answer.
async function variants(scheme, library, sign, check, secret, other, credential, hexMarker) {
  const out = [];
  const add = async (name, headers, body = BODY, settings = secretsToml(secret), verifySecret = secret) => {
    let accepts;
    try {
      accepts = Boolean(await check(headers, body, verifySecret));
    } catch {
      accepts = false;
    }
    out.push({ scheme, case: name, settings, headers, body, now: NOW, official: accepts ? "accept" : "reject", library });
  };
  const signed = await sign(secret, BODY);
  await add("valid", signed);
  await add("body tampered (a byte added)", signed, BODY + " ");
  await add("another secret", await sign(other, BODY));
  await add("rotated secret: the older of two live secrets", await sign(other, BODY), BODY, secretsToml(secret, other), other);
  if (hexMarker) {
    const upper = signed.map(([k, v]) => (k === credential ? [k, v.split(hexMarker)[0] + hexMarker + v.split(hexMarker)[1].toUpperCase()] : [k, v]));
    await add("signature in upper-case hex", upper);
  }
  await add("signature header missing", signed.filter(([k]) => k !== credential));
  await add("signature header garbage", signed.map(([k, v]) => [k, k === credential ? "garbage" : v]));
  await add("signature header empty", signed.map(([k, v]) => [k, k === credential ? "" : v]));
  await add("signature header sent twice", [...signed, ...signed.filter(([k]) => k === credential)]);
  await add("empty body", await sign(secret, ""), "");
  return out;
}

async function hmacBytes(secret, body) {
  const key = await crypto.subtle.importKey("raw", new TextEncoder().encode(secret), { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  return crypto.subtle.sign("HMAC", key, new TextEncoder().encode(body));
}

function dump(scheme, cases) {
  writeFileSync(`${OUT}/${scheme}.json`, JSON.stringify(cases, null, 2) + "\n");
  console.log(`${scheme}: ${cases.length} cases`);
}

dump(
  "github",
  await variants(
    "github",
    `@octokit/webhooks-methods ${versionOf("@octokit/webhooks-methods")} verify`,
    // octokit signs no empty payload; that one is signed by hand (its `verify` then says what it thinks of it).
    async (secret, body) => [
      ["x-hub-signature-256", body === "" ? "sha256=" + Buffer.from(await hmacBytes(secret, body)).toString("hex") : await sign(secret, body)],
      ["x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"],
    ],
    (headers, body, secret) => verify(secret, body, joined(headers).get("x-hub-signature-256") ?? ""),
    "It's a Secret to Everybody",
    "an older secret",
    "x-hub-signature-256",
    "sha256=",
  ),
);

const shopifyHeaders = [
  ["x-shopify-topic", "orders/create"],
  ["x-shopify-shop-domain", "example.myshopify.com"],
  ["x-shopify-api-version", "2025-10"],
  ["x-shopify-webhook-id", "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"],
];
const hmac = async (secret, body) => Buffer.from(await hmacBytes(secret, body)).toString("base64");
const shopify = (secret) =>
  shopifyApi({ apiKey: "key", apiSecretKey: secret, scopes: [], hostName: "hooks.example.com", apiVersion: ApiVersion.October25, isEmbeddedApp: false, logger: { level: 0 } });
const shopifyCases = await variants(
  "shopify",
  `@shopify/shopify-api ${versionOf("@shopify/shopify-api")} webhooks.validate`,
  async (secret, body) => [["x-shopify-hmac-sha256", await hmac(secret, body)], ...shopifyHeaders],
  async (headers, body, secret) =>
    (await shopify(secret).webhooks.validate({ rawBody: body, rawRequest: new Request("https://hooks.example.com/webhooks/shopify", { method: "POST", headers: joined(headers), body }) })).valid,
  "shpss_conformance_new",
  "shpss_conformance_old",
  "x-shopify-hmac-sha256",
  null,
);
// What Shopify's library checks beyond the MAC: the headers Shopify always sends.
for (const [missing] of shopifyHeaders) {
  const secret = "shpss_conformance_new";
  const headers = [["x-shopify-hmac-sha256", await hmac(secret, BODY)], ...shopifyHeaders.filter(([k]) => k !== missing)];
  const result = await shopify(secret).webhooks.validate({ rawBody: BODY, rawRequest: new Request("https://hooks.example.com/webhooks/shopify", { method: "POST", headers: joined(headers), body: BODY }) });
  shopifyCases.push({ scheme: "shopify", case: `${missing} missing`, settings: secretsToml(secret), headers, body: BODY, now: NOW, official: result.valid ? "accept" : "reject", library: shopifyCases[0].library });
}
dump("shopify", shopifyCases);
