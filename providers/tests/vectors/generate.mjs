// Makes the GitHub and Shopify vectors with the providers' own JavaScript libraries (see generate.py).
import { writeFileSync } from "node:fs";
import { sign, verify } from "@octokit/webhooks-methods";
import "@shopify/shopify-api/adapters/web-api";
import { shopifyApi, ApiVersion } from "@shopify/shopify-api";

const OUT = process.env.OUT ?? ".";
const NOW = 1764234000;
const bodies = [
  ["push", '{"ref":"refs/heads/main","repository":{"full_name":"acme/api"},"head_commit":{"message":"Zoë fixed it 🚀"}}'],
  ["pull request", '{\n  "action": "opened",\n  "number": 42,\n  "pull_request": {"number": 42},\n  "repository": {"full_name": "acme/api"}\n}'],
];

const github = [];
const secret = "It's a Secret to Everybody";
for (const [name, body] of bodies) {
  const sig = await sign(secret, body);
  if (!(await verify(secret, body, sig))) throw new Error("octokit rejects its own signature");
  github.push({ name: `github ${name}`, secret, body, headers: { "x-hub-signature-256": sig, "x-github-delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958" }, now: NOW });
}
writeFileSync(`${OUT}/github.json`, JSON.stringify(github, null, 2) + "\n");
console.log(`github: ${github.length} vectors`);

const apiSecretKey = "shpss_0123456789abcdef0123456789abcdef";
const shopify = shopifyApi({ apiKey: "key", apiSecretKey, scopes: [], hostName: "hooks.example.com", apiVersion: ApiVersion.October25, isEmbeddedApp: false, logger: { level: 0 } });
const orders = [
  ["order created", "x-shopify", '{"id":820982911946154508,"admin_graphql_api_id":"gid://shopify/Order/820982911946154508","email":"jon@example.com","total_price":"403.00"}'],
  ["events webhook headers", "shopify", '{"id":820982911946154509,"note":"Zoë 🚀"}'],
];
const out = [];
for (const [name, prefix, body] of orders) {
  const hmac = await crypto.subtle
    .importKey("raw", new TextEncoder().encode(apiSecretKey), { name: "HMAC", hash: "SHA-256" }, false, ["sign"])
    .then((k) => crypto.subtle.sign("HMAC", k, new TextEncoder().encode(body)))
    .then((b) => Buffer.from(b).toString("base64"));
  const headers = {
    [`${prefix}-hmac-sha256`]: hmac,
    [`${prefix}-topic`]: "orders/create",
    [`${prefix}-shop-domain`]: "example.myshopify.com",
    [`${prefix}-api-version`]: "2025-10",
    [`${prefix}-webhook-id`]: "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
    [`${prefix}-event-id`]: "98880550-7158-44d4-b7cd-2c97c8a091b5",
    [`${prefix}-triggered-at`]: "2025-11-27T09:00:00Z",
  };
  if (prefix === "shopify") {
    headers["shopify-handle"] = "h";
    headers["shopify-action"] = "create";
    headers["shopify-resource-id"] = "820982911946154509";
  }
  const result = await shopify.webhooks.validate({ rawBody: body, rawRequest: new Request("https://hooks.example.com/webhooks/shopify", { method: "POST", headers, body }) });
  if (!result.valid) throw new Error(`Shopify's library rejects the vector: ${JSON.stringify(result)}`);
  out.push({ name: `shopify ${name}`, secret: apiSecretKey, body, headers, now: NOW });
}
writeFileSync(`${OUT}/shopify.json`, JSON.stringify(out, null, 2) + "\n");
console.log(`shopify: ${out.length} vectors`);
