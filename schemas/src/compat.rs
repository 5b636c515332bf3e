//! Compatibility of the published contracts: the check behind `make schemas-check` and the `schemas-check`
//! binary.
//!
//! The invariant it keeps: **a record that satisfied a published contract keeps satisfying it**, whether a
//! consumer reads it with the same version of the contract (edited since) or with a newer one. A schemas
//! folder is laid out as
//!
//! ```text
//! json/**/<name>.v<N>.schema.json       one JSON Schema per contract version; its `$id` ends in its file name
//! examples/<name>.v<N>/<example>.json   example records of that version, at least one
//! ```
//!
//! and is compatible when:
//!
//! 1. every `*.json` file under `json/` (at any depth) is named `<name>.v<N>.schema.json` (`name`: lowercase
//!    letters, digits, `-` and `_`; `N` from 1), is unique, compiles, and has an `$id` ending in `/` and its
//!    file name;
//! 2. every schema has an example folder holding at least one example, and every example satisfies it (so
//!    a change within a version must keep accepting the records it accepted: only additive changes);
//! 3. for `<name>.vN` with N > 1, every example of every earlier `<name>.vM` (M < N) satisfies vN: a new
//!    version may add and relax, but must not reject a record written under an older one;
//! 4. every example folder (and every example) belongs to a schema.
//!
//! Breaking changes therefore need a new name or are caught: a field that becomes required, a type that
//! narrows, an enum that loses a value all reject an older example. The examples are the regression corpus:
//! give each a realistic shape, and add one when a record can take a new shape.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// The folder of JSON Schema files inside a schemas folder.
pub const SCHEMA_DIR: &str = "json";
/// The folder of example records inside a schemas folder.
pub const EXAMPLE_DIR: &str = "examples";
/// How a schema file name ends.
pub const SCHEMA_SUFFIX: &str = ".schema.json";
/// Longest validation message kept (messages quote the offending value, which can be a whole object).
const MAX_MESSAGE_CHARS: usize = 200;
/// Violations shown per example; the rest are counted.
const SHOWN_VIOLATIONS: usize = 5;

/// A contract version: `event.v1` is the name `event`, version 1.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SchemaName {
    /// The contract's name (`event`, `stripe-event`).
    pub name: String,
    /// Its version, from 1.
    pub version: u32,
}

impl SchemaName {
    /// Parses `<name>.v<N>`: a name of lowercase letters, digits, `-` and `_` starting with a letter or digit,
    /// and a version from 1 written without leading zeros.
    pub fn parse(stem: &str) -> Option<SchemaName> {
        let (name, version) = stem.rsplit_once(".v")?;
        let name_ok = name.as_bytes().first().is_some_and(u8::is_ascii_alphanumeric)
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        let version_ok =
            !version.is_empty() && !version.starts_with('0') && version.bytes().all(|b| b.is_ascii_digit());
        if !(name_ok && version_ok) {
            return None;
        }
        Some(SchemaName { name: name.to_owned(), version: version.parse().ok()? })
    }

    /// Parses a schema file name, `<name>.v<N>.schema.json`.
    pub fn from_file_name(file_name: &str) -> Option<SchemaName> {
        file_name.strip_suffix(SCHEMA_SUFFIX).and_then(SchemaName::parse)
    }

    /// Its schema file name, `<name>.v<N>.schema.json`.
    pub fn file_name(&self) -> String {
        format!("{self}{SCHEMA_SUFFIX}")
    }
}

impl fmt::Display for SchemaName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.v{}", self.name, self.version)
    }
}

/// One way a record fails a schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// JSON Pointer to the offending value in the record (`""` is the whole record, `/data/id` a member).
    pub pointer: String,
    /// What is wrong, as the validator words it (`"tenant" is a required property`), cut to 200 characters.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = if self.pointer.is_empty() { "(the record)" } else { self.pointer.as_str() };
        write!(f, "at {at}: {}", self.message)
    }
}

/// Something that makes a schemas folder incompatible. Paths are the checked folder joined with the file's
/// place in it, so they can be opened as printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// A file cannot be read or is not JSON.
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        error: String,
    },
    /// A JSON file under `json/` that is not named `<name>.v<N>.schema.json`.
    BadFileName {
        /// The file.
        path: PathBuf,
    },
    /// A schema whose `$id` is missing or does not end with its file name.
    BadId {
        /// The schema.
        schema: SchemaName,
        /// Its file.
        path: PathBuf,
        /// The `$id` found, if any.
        id: Option<String>,
    },
    /// A schema that is not a valid JSON Schema.
    DoesNotCompile {
        /// The schema.
        schema: SchemaName,
        /// Its file.
        path: PathBuf,
        /// The compiler's message.
        error: String,
    },
    /// Two schema files with the same name and version (in different folders).
    Duplicate {
        /// The schema.
        schema: SchemaName,
        /// The file kept.
        first: PathBuf,
        /// The file ignored.
        second: PathBuf,
    },
    /// A schema without an example folder, or with an empty one.
    NoExamples {
        /// The schema.
        schema: SchemaName,
        /// Where its examples belong.
        folder: PathBuf,
    },
    /// An example its own schema rejects.
    InvalidExample {
        /// The schema.
        schema: SchemaName,
        /// The example.
        example: PathBuf,
        /// Why.
        violations: Vec<Violation>,
    },
    /// A newer version that rejects an example of an older one.
    RejectsEarlier {
        /// The newer version, the one at fault.
        schema: SchemaName,
        /// The older version the example belongs to.
        earlier: SchemaName,
        /// The example.
        example: PathBuf,
        /// Why the newer version rejects it.
        violations: Vec<Violation>,
    },
    /// An example folder whose name is not the stem of a schema file.
    OrphanExamples {
        /// The folder.
        folder: PathBuf,
    },
    /// A JSON file directly under `examples/`, outside any schema's folder.
    MisplacedExample {
        /// The file.
        path: PathBuf,
    },
}

impl Problem {
    /// The schema at fault, when there is one.
    pub fn schema(&self) -> Option<&SchemaName> {
        match self {
            Problem::BadId { schema, .. }
            | Problem::DoesNotCompile { schema, .. }
            | Problem::Duplicate { schema, .. }
            | Problem::NoExamples { schema, .. }
            | Problem::InvalidExample { schema, .. }
            | Problem::RejectsEarlier { schema, .. } => Some(schema),
            Problem::Unreadable { .. }
            | Problem::BadFileName { .. }
            | Problem::OrphanExamples { .. }
            | Problem::MisplacedExample { .. } => None,
        }
    }
}

fn write_violations(f: &mut fmt::Formatter<'_>, violations: &[Violation]) -> fmt::Result {
    for v in violations.iter().take(SHOWN_VIOLATIONS) {
        write!(f, "\n      {v}")?;
    }
    if violations.len() > SHOWN_VIOLATIONS {
        write!(f, "\n      … and {} more", violations.len() - SHOWN_VIOLATIONS)?;
    }
    Ok(())
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Unreadable { path, error } => write!(f, "{} cannot be read as JSON: {error}", path.display()),
            Problem::BadFileName { path } => write!(
                f,
                "{} is not named <name>.v<N>.schema.json (name: lowercase letters, digits, - and _; N: 1, 2, …)",
                path.display()
            ),
            Problem::BadId { schema, path, id: None } => {
                write!(f, "{schema}: {} has no $id; it must end with /{}", path.display(), schema.file_name())
            }
            Problem::BadId { schema, path, id: Some(id) } => {
                write!(f, "{schema}: the $id of {} is {id}; it must end with /{}", path.display(), schema.file_name())
            }
            Problem::DoesNotCompile { schema, path, error } => {
                write!(f, "{schema}: {} is not a valid JSON Schema: {error}", path.display())
            }
            Problem::Duplicate { schema, first, second } => write!(
                f,
                "{schema} is defined twice: {} and {} (a name and version must be unique under json/)",
                first.display(),
                second.display()
            ),
            Problem::NoExamples { schema, folder } => write!(
                f,
                "{schema} has no examples: add at least one record of this version as {}/<example>.json",
                folder.display()
            ),
            Problem::InvalidExample { schema, example, violations } => {
                write!(f, "{schema} rejects its own example {}:", example.display())?;
                write_violations(f, violations)
            }
            Problem::RejectsEarlier { schema, earlier, example, violations } => {
                write!(
                    f,
                    "{schema} rejects {}, an example of {earlier}: records written under {earlier} would no \
                     longer be valid. Make the change optional, or publish it under a new name:",
                    example.display()
                )?;
                write_violations(f, violations)
            }
            Problem::OrphanExamples { folder } => write!(
                f,
                "{} has no schema: an example folder is named after a schema file under json/ \
                 (<name>.v<N> for <name>.v<N>.schema.json)",
                folder.display()
            ),
            Problem::MisplacedExample { path } => {
                write!(f, "{} is outside any example folder: move it to examples/<name>.v<N>/", path.display())
            }
        }
    }
}

/// One schema that was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// The schema.
    pub schema: SchemaName,
    /// Its file.
    pub file: PathBuf,
    /// How many of its own examples it was checked against.
    pub examples: usize,
    /// How many examples of its earlier versions it was checked against.
    pub earlier_examples: usize,
}

/// The outcome of [`check`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Every schema found, by name and version.
    pub checked: Vec<Checked>,
    /// Every problem found; none when the folder is compatible.
    pub problems: Vec<Problem>,
}

impl Report {
    /// True when there is no problem.
    pub fn is_compatible(&self) -> bool {
        self.problems.is_empty()
    }

    /// The problems `schema` is at fault for.
    pub fn problems_of<'a>(&'a self, schema: &'a SchemaName) -> impl Iterator<Item = &'a Problem> + 'a {
        self.problems.iter().filter(move |p| p.schema() == Some(schema))
    }

    /// How many examples were checked, counting each once.
    pub fn example_count(&self) -> usize {
        self.checked.iter().map(|c| c.examples).sum()
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// One line per schema, then the problems, then a summary line: what `schemas-check` prints.
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self.checked.iter().map(|c| c.schema.to_string().len()).max().unwrap_or(0);
        let file_width = self.checked.iter().map(|c| c.file.display().to_string().len()).max().unwrap_or(0);
        for c in &self.checked {
            let status = if self.problems_of(&c.schema).next().is_none() { "ok  " } else { "FAIL" };
            let mut what = plural(c.examples, "example", "examples");
            if c.earlier_examples > 0 {
                what.push_str(&format!(", {} of earlier versions", plural(c.earlier_examples, "example", "examples")));
            }
            let file = c.file.display().to_string();
            writeln!(f, "{status}  {:<width$}  {file:<file_width$}  {what}", c.schema.to_string())?;
        }
        if !self.problems.is_empty() {
            writeln!(f, "\n{}:", plural(self.problems.len(), "problem", "problems"))?;
            for (i, p) in self.problems.iter().enumerate() {
                writeln!(f, "  {}. {p}", i + 1)?;
            }
        }
        let counts = format!(
            "{} and {} checked",
            plural(self.checked.len(), "schema", "schemas"),
            plural(self.example_count(), "example", "examples")
        );
        if self.is_compatible() {
            writeln!(f, "\ncompatible: {counts}")
        } else {
            writeln!(f, "\nNOT compatible: {}; {counts}", plural(self.problems.len(), "problem", "problems"))
        }
    }
}

/// The folder given to [`check`] has no `json/` folder.
#[derive(Debug, thiserror::Error)]
#[error("{} is not a schemas folder: it has no {SCHEMA_DIR}/ folder", .0.display())]
pub struct NotASchemasFolder(pub PathBuf);

struct Schema {
    file: PathBuf,
    validator: Option<jsonschema::Validator>,
}

struct Example {
    file: PathBuf,
    value: Value,
}

/// Checks the schemas folder `dir` (see the module docs for the rules). Every problem is collected, not just
/// the first.
pub fn check(dir: &Path) -> Result<Report, NotASchemasFolder> {
    let schema_dir = dir.join(SCHEMA_DIR);
    if !schema_dir.is_dir() {
        return Err(NotASchemasFolder(dir.to_owned()));
    }
    let mut problems = Vec::new();
    let schemas = load_schemas(&schema_dir, &mut problems);
    let examples = load_examples(&dir.join(EXAMPLE_DIR), &schemas, &mut problems);

    let mut checked = Vec::with_capacity(schemas.len());
    for (name, schema) in &schemas {
        let own = examples.get(name).map(Vec::as_slice).unwrap_or_default();
        if own.is_empty() {
            problems.push(Problem::NoExamples {
                schema: name.clone(),
                folder: dir.join(EXAMPLE_DIR).join(name.to_string()),
            });
        }
        let earlier: Vec<(&SchemaName, &Example)> = examples
            .iter()
            .filter(|(other, _)| other.name == name.name && other.version < name.version)
            .flat_map(|(other, list)| list.iter().map(move |e| (other, e)))
            .collect();
        if let Some(validator) = &schema.validator {
            for e in own {
                let violations = violations(validator, &e.value);
                if !violations.is_empty() {
                    problems.push(Problem::InvalidExample {
                        schema: name.clone(),
                        example: e.file.clone(),
                        violations,
                    });
                }
            }
            for (other, e) in &earlier {
                let violations = violations(validator, &e.value);
                if !violations.is_empty() {
                    problems.push(Problem::RejectsEarlier {
                        schema: name.clone(),
                        earlier: (*other).clone(),
                        example: e.file.clone(),
                        violations,
                    });
                }
            }
        }
        checked.push(Checked {
            schema: name.clone(),
            file: schema.file.clone(),
            examples: own.len(),
            earlier_examples: earlier.len(),
        });
    }
    Ok(Report { checked, problems })
}

fn violations(validator: &jsonschema::Validator, instance: &Value) -> Vec<Violation> {
    validator
        .iter_errors(instance)
        .map(|e| {
            let message = e.to_string();
            let cut = match message.char_indices().nth(MAX_MESSAGE_CHARS) {
                Some((at, _)) => format!("{}…", &message[..at]),
                None => message,
            };
            Violation { pointer: e.instance_path().to_string(), message: cut }
        })
        .collect()
}

/// The entries of `dir`, sorted, without hidden ones (`.DS_Store`, editor files).
fn entries(dir: &Path, problems: &mut Vec<Problem>) -> Vec<PathBuf> {
    let read = match std::fs::read_dir(dir) {
        Ok(read) => read,
        Err(e) => {
            problems.push(Problem::Unreadable { path: dir.to_owned(), error: e.to_string() });
            return Vec::new();
        }
    };
    let mut paths: Vec<PathBuf> = read
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|p| !p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.')))
        .collect();
    paths.sort();
    paths
}

fn is_json_file(path: &Path) -> bool {
    path.is_file() && path.extension().is_some_and(|e| e == "json")
}

fn read_json(path: &Path, problems: &mut Vec<Problem>) -> Option<Value> {
    let parsed = std::fs::read(path)
        .map_err(|e| e.to_string())
        .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| e.to_string()));
    match parsed {
        Ok(value) => Some(value),
        Err(error) => {
            problems.push(Problem::Unreadable { path: path.to_owned(), error });
            None
        }
    }
}

fn load_schemas(dir: &Path, problems: &mut Vec<Problem>) -> BTreeMap<SchemaName, Schema> {
    let mut files = Vec::new();
    let mut folders = vec![dir.to_owned()];
    while let Some(folder) = folders.pop() {
        for path in entries(&folder, problems) {
            if path.is_dir() {
                folders.push(path);
            } else if is_json_file(&path) {
                files.push(path);
            }
        }
    }
    files.sort();

    let mut schemas = BTreeMap::new();
    for path in files {
        let Some(name) = path.file_name().and_then(|n| n.to_str()).and_then(SchemaName::from_file_name) else {
            problems.push(Problem::BadFileName { path });
            continue;
        };
        if let Some(first) = schemas.get(&name).map(|s: &Schema| s.file.clone()) {
            problems.push(Problem::Duplicate { schema: name, first, second: path });
            continue;
        }
        let Some(value) = read_json(&path, problems) else { continue };
        let id = value.get("$id").and_then(Value::as_str);
        if !id.is_some_and(|id| id.ends_with(&format!("/{}", name.file_name()))) {
            problems.push(Problem::BadId { schema: name.clone(), path: path.clone(), id: id.map(str::to_owned) });
        }
        let validator = match jsonschema::validator_for(&value) {
            Ok(v) => Some(v),
            Err(e) => {
                problems.push(Problem::DoesNotCompile {
                    schema: name.clone(),
                    path: path.clone(),
                    error: e.to_string(),
                });
                None
            }
        };
        schemas.insert(name, Schema { file: path, validator });
    }
    schemas
}

fn load_examples(
    dir: &Path,
    schemas: &BTreeMap<SchemaName, Schema>,
    problems: &mut Vec<Problem>,
) -> BTreeMap<SchemaName, Vec<Example>> {
    let mut examples = BTreeMap::new();
    if !dir.is_dir() {
        return examples;
    }
    for path in entries(dir, problems) {
        if !path.is_dir() {
            if is_json_file(&path) {
                problems.push(Problem::MisplacedExample { path });
            }
            continue;
        }
        let name = path.file_name().and_then(|n| n.to_str()).and_then(SchemaName::parse);
        let Some(name) = name.filter(|n| schemas.contains_key(n)) else {
            problems.push(Problem::OrphanExamples { folder: path });
            continue;
        };
        let list: Vec<Example> = entries(&path, problems)
            .into_iter()
            .filter(|p| is_json_file(p))
            .filter_map(|file| read_json(&file, problems).map(|value| Example { file, value }))
            .collect();
        examples.insert(name, list);
    }
    examples
}

/// The schemas folder of this crate: `CARGO_MANIFEST_DIR` as set when the program runs (cargo sets it for
/// `cargo run` and `cargo test`), else as it was when the program was built. The run-time value comes first
/// because a target folder can be shared between checkouts.
pub fn crate_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use serde_json::json;

    use super::*;
    use crate::event::CloudEvent;
    use crate::json_schema::Contract;

    /// A scratch folder removed on drop (the crate's dependencies stay those of Cargo.lock, so no `tempfile`).
    struct Scratch(PathBuf);

    impl Scratch {
        fn new() -> Scratch {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "hookline-schemas-compat-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(dir.join(SCHEMA_DIR)).unwrap();
            Scratch(dir)
        }

        fn schema(&self, name: &str, body: Value) -> &Scratch {
            let mut schema = json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "$id": format!("https://hookline.dev/schemas/{name}.schema.json"),
            });
            schema.as_object_mut().unwrap().extend(body.as_object().unwrap().clone());
            self.file(&format!("{SCHEMA_DIR}/{name}.schema.json"), &schema)
        }

        fn example(&self, folder: &str, name: &str, value: Value) -> &Scratch {
            self.file(&format!("{EXAMPLE_DIR}/{folder}/{name}.json"), &value)
        }

        fn file(&self, relative: &str, value: &Value) -> &Scratch {
            let path = self.0.join(relative);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, serde_json::to_vec_pretty(value).unwrap()).unwrap();
            self
        }

        fn check(&self) -> Report {
            check(&self.0).unwrap()
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn name(s: &str) -> SchemaName {
        SchemaName::parse(s).unwrap()
    }

    /// An `order` contract, version 1, with one example.
    fn order_v1(dir: &Scratch) -> &Scratch {
        dir.schema(
            "order.v1",
            json!({
                "type": "object",
                "required": ["id"],
                "properties": { "id": { "type": "string" }, "amount": { "type": ["number", "string"] } }
            }),
        )
        .example("order.v1", "paid", json!({ "id": "ord_1", "amount": "12.50" }))
    }

    #[test]
    fn the_published_schemas_and_examples_are_compatible() {
        let report = check(&crate_dir()).unwrap();
        let shown = report.to_string();
        assert_eq!(report.problems, Vec::new(), "{shown}");
        assert!(
            shown.ends_with(&format!(
                "compatible: {} schemas and {} examples checked\n",
                report.checked.len(),
                report.example_count()
            )),
            "{shown}"
        );
        let checked: Vec<String> = report.checked.iter().map(|c| c.schema.to_string()).collect();
        for contract in Contract::ALL {
            let file = contract.file_name();
            assert!(
                checked.iter().any(|c| format!("{c}{SCHEMA_SUFFIX}") == file),
                "{file} is not checked: {checked:?}"
            );
        }
        for provider in ["stripe-event.v1", "github-push.v1", "github-pull_request.v1", "shopify-order.v1"] {
            let c = report.checked.iter().find(|c| c.schema.to_string() == provider).unwrap();
            assert!(c.examples >= 2, "{provider} has {} examples", c.examples);
            assert!(c.file.ends_with(format!("json/data/{provider}.schema.json")), "{}", c.file.display());
        }
    }

    #[test]
    fn a_v2_that_adds_a_required_field_rejects_the_v1_examples() {
        let dir = Scratch::new();
        order_v1(&dir)
            .schema(
                "order.v2",
                json!({
                    "type": "object",
                    "required": ["id", "tenant"],
                    "properties": { "id": { "type": "string" }, "tenant": { "type": "string" } }
                }),
            )
            .example("order.v2", "paid", json!({ "id": "ord_2", "tenant": "acme" }));
        let report = dir.check();
        let v1_example = dir.0.join("examples/order.v1/paid.json");
        assert_eq!(
            report.problems,
            vec![Problem::RejectsEarlier {
                schema: name("order.v2"),
                earlier: name("order.v1"),
                example: v1_example.clone(),
                violations: vec![Violation {
                    pointer: String::new(),
                    message: "\"tenant\" is a required property".into()
                }],
            }]
        );
        let shown = report.to_string();
        assert!(
            shown.contains(&format!("order.v2 rejects {}, an example of order.v1", v1_example.display())),
            "{shown}"
        );
        assert!(shown.contains("at (the record): \"tenant\" is a required property"), "{shown}");
        assert!(shown.contains("FAIL  order.v2"), "{shown}");
        assert!(shown.contains("ok    order.v1"), "{shown}");
        assert!(shown.ends_with("NOT compatible: 1 problem; 2 schemas and 2 examples checked\n"), "{shown}");
    }

    #[test]
    fn a_v2_that_narrows_a_type_rejects_the_v1_examples() {
        let dir = Scratch::new();
        order_v1(&dir)
            .schema(
                "order.v2",
                json!({
                    "type": "object",
                    "required": ["id"],
                    "properties": { "id": { "type": "string" }, "amount": { "type": "number" } }
                }),
            )
            .example("order.v2", "paid", json!({ "id": "ord_2", "amount": 12.5 }));
        let problems = dir.check().problems;
        assert_eq!(problems.len(), 1, "{problems:#?}");
        let Problem::RejectsEarlier { schema, earlier, example, violations } = &problems[0] else {
            panic!("{problems:#?}")
        };
        assert_eq!((schema, earlier), (&name("order.v2"), &name("order.v1")));
        assert!(example.ends_with("examples/order.v1/paid.json"), "{}", example.display());
        assert_eq!(violations.len(), 1);
        assert_eq!(violations[0].pointer, "/amount");
        assert!(violations[0].message.contains("\"12.50\" is not of type \"number\""), "{}", violations[0].message);
    }

    #[test]
    fn a_v2_that_only_adds_an_optional_field_is_compatible() {
        let dir = Scratch::new();
        order_v1(&dir)
            .schema(
                "order.v2",
                json!({
                    "type": "object",
                    "required": ["id"],
                    "properties": {
                        "id": { "type": "string" },
                        "amount": { "type": ["number", "string"] },
                        "tenant": { "type": "string" }
                    }
                }),
            )
            .example("order.v2", "with-tenant", json!({ "id": "ord_2", "tenant": "acme" }));
        let report = dir.check();
        assert_eq!(report.problems, Vec::new(), "{report}");
        let v2 = report.checked.iter().find(|c| c.schema == name("order.v2")).unwrap();
        assert_eq!((v2.examples, v2.earlier_examples), (1, 1), "v2 was checked against v1's example");
        assert!(report.to_string().contains("ok    order.v2"), "{report}");
    }

    #[test]
    fn an_example_its_own_schema_rejects_is_named_with_the_pointer() {
        let dir = Scratch::new();
        order_v1(&dir).example("order.v1", "bad", json!({ "id": 7 }));
        let report = dir.check();
        assert_eq!(
            report.problems,
            vec![Problem::InvalidExample {
                schema: name("order.v1"),
                example: dir.0.join("examples/order.v1/bad.json"),
                violations: vec![Violation { pointer: "/id".into(), message: "7 is not of type \"string\"".into() }],
            }]
        );
        assert!(report.to_string().contains("at /id: 7 is not of type \"string\""), "{report}");
    }

    #[test]
    fn a_schema_without_examples_fails() {
        let dir = Scratch::new();
        order_v1(&dir).schema("refund.v1", json!({ "type": "object" }));
        let report = dir.check();
        let folder = dir.0.join("examples/refund.v1");
        assert_eq!(report.problems, vec![Problem::NoExamples { schema: name("refund.v1"), folder: folder.clone() }]);
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("README.md"), "not an example").unwrap();
        assert_eq!(
            dir.check().problems,
            vec![Problem::NoExamples { schema: name("refund.v1"), folder }],
            "an empty folder (or one without .json files) is no better"
        );
    }

    #[test]
    fn examples_without_a_schema_fail() {
        let dir = Scratch::new();
        order_v1(&dir)
            .example("order.v3", "x", json!({}))
            .example("orders", "x", json!({}))
            .file("examples/loose.json", &json!({}));
        assert_eq!(
            dir.check().problems,
            vec![
                Problem::MisplacedExample { path: dir.0.join("examples/loose.json") },
                Problem::OrphanExamples { folder: dir.0.join("examples/order.v3") },
                Problem::OrphanExamples { folder: dir.0.join("examples/orders") },
            ]
        );
    }

    #[test]
    fn file_names_ids_and_invalid_schemas_are_reported() {
        let dir = Scratch::new();
        order_v1(&dir)
            .file("json/order.schema.json", &json!({}))
            .file("json/Order.v1.schema.json", &json!({}))
            .file("json/order.v01.schema.json", &json!({}))
            .file("json/nested/order.v1.schema.json", &json!({ "$id": "https://hookline.dev/order.v1.schema.json" }))
            .file("json/data/misnamed.v1.schema.json", &json!({ "$id": "https://hookline.dev/other.v1.schema.json" }))
            .file("json/data/broken.v1.schema.json", &json!({ "$id": "x/broken.v1.schema.json", "type": "strng" }))
            .example("misnamed.v1", "x", json!({}))
            .example("broken.v1", "x", json!({}));
        std::fs::write(dir.0.join("json/data/garbled.v1.schema.json"), "{ not json").unwrap();
        let problems = dir.check().problems;
        let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
        let expect = |needle: &str| assert!(shown.iter().any(|p| p.contains(needle)), "no `{needle}` in {shown:#?}");
        expect("Order.v1.schema.json is not named <name>.v<N>.schema.json");
        expect("order.v01.schema.json is not named");
        expect("order.schema.json is not named");
        expect("order.v1 is defined twice");
        expect("misnamed.v1: the $id of");
        expect("is https://hookline.dev/other.v1.schema.json; it must end with /misnamed.v1.schema.json");
        expect("broken.v1: ");
        expect("broken.v1.schema.json is not a valid JSON Schema");
        expect("garbled.v1.schema.json cannot be read as JSON");
        assert!(
            matches!(
                problems.iter().find(|p| matches!(p, Problem::Duplicate { .. })),
                Some(Problem::Duplicate { first, second, .. })
                    if first.ends_with("json/nested/order.v1.schema.json") && second.ends_with("json/order.v1.schema.json")
            ),
            "{problems:#?}"
        );
        assert_eq!(problems.len(), 7, "{shown:#?}");
    }

    #[test]
    fn a_folder_without_json_is_not_a_schemas_folder() {
        let dir = Scratch::new();
        std::fs::remove_dir_all(dir.0.join(SCHEMA_DIR)).unwrap();
        let e = check(&dir.0).unwrap_err();
        assert!(e.to_string().ends_with("is not a schemas folder: it has no json/ folder"), "{e}");
    }

    #[test]
    fn schema_names_parse_strictly() {
        assert_eq!(
            SchemaName::parse("github-pull_request.v12"),
            Some(SchemaName { name: "github-pull_request".into(), version: 12 })
        );
        for bad in
            ["event", "event.v0", "event.v", "event.v1a", "Event.v1", "-event.v1", ".v1", "ev ent.v1", "event.v01"]
        {
            assert_eq!(SchemaName::parse(bad), None, "{bad}");
        }
        assert_eq!(
            SchemaName::from_file_name("event.v1.schema.json").map(|n| n.file_name()).as_deref(),
            Some("event.v1.schema.json")
        );
    }

    fn examples_of(folder: &str) -> Vec<(PathBuf, Value)> {
        let dir = crate_dir().join(EXAMPLE_DIR).join(folder);
        let mut problems = Vec::new();
        let out: Vec<(PathBuf, Value)> = entries(&dir, &mut problems)
            .into_iter()
            .map(|p| {
                let v = read_json(&p, &mut problems).unwrap();
                (p, v)
            })
            .collect();
        assert_eq!(problems, Vec::new());
        assert!(!out.is_empty(), "{folder}");
        out
    }

    fn validator(relative: &str) -> jsonschema::Validator {
        let text = std::fs::read_to_string(crate_dir().join(SCHEMA_DIR).join(relative)).unwrap();
        jsonschema::validator_for(&serde_json::from_str(&text).unwrap()).unwrap()
    }

    #[test]
    fn event_examples_are_what_the_rust_event_type_writes() {
        for (path, example) in examples_of("event.v1") {
            let event: CloudEvent = serde_json::from_value(example.clone()).unwrap();
            let written = serde_json::to_value(&event).unwrap();
            assert_eq!(written, example, "{}", path.display());
            let order = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
            assert_eq!(
                order(&written),
                order(&example),
                "{}: members in the order hookline writes them",
                path.display()
            );
            let origin = crate::output::Origin::of_event(&serde_json::to_vec(&example).unwrap()).unwrap();
            assert_eq!(origin.dedup_key, event.hooklinededupkey, "{}", path.display());
        }
    }

    #[test]
    fn record_examples_carry_headers_the_rust_readers_accept() {
        let headers = |record: &Value, name: &str| serde_json::to_vec(&record["headers"][name]).unwrap();
        for (path, record) in examples_of("raw-record.v1") {
            let meta = headers(&record, crate::header::META);
            let meta = crate::raw::RawMeta::from_headers([(crate::header::META, Some(meta.as_slice()))]);
            assert!(meta.is_ok(), "{}: {meta:?}", path.display());
        }
        for (path, record) in examples_of("dlq-record.v1") {
            let dlq = headers(&record, crate::header::DLQ);
            let meta = crate::dlq::DlqMeta::from_headers([(crate::header::DLQ, Some(dlq.as_slice()))]).unwrap();
            assert_eq!(record["partition"], meta.raw_partition, "{}: same partition as the raw record", path.display());
        }
        let event = Contract::Event.validator().unwrap();
        for (path, record) in examples_of("event-record.v1") {
            assert_eq!(event.violations(&record["value"]), Vec::<String>::new(), "{}", path.display());
            assert_eq!(
                record["partition"],
                record["value"]["hooklinepartition"],
                "{}: same partition as the raw record",
                path.display()
            );
        }
    }

    #[test]
    fn the_data_of_provider_event_examples_satisfies_the_provider_data_schemas() {
        let schemas = [
            ("stripe", None, "data/stripe-event.v1.schema.json"),
            ("github", Some("push"), "data/github-push.v1.schema.json"),
            ("github", Some("pull_request."), "data/github-pull_request.v1.schema.json"),
            ("shopify", Some("orders/"), "data/shopify-order.v1.schema.json"),
        ];
        let mut seen = 0;
        for (path, event) in examples_of("event.v1") {
            let (source, ty) = (event["hooklinesource"].as_str().unwrap(), event["type"].as_str().unwrap());
            for (provider, prefix, file) in schemas {
                if source == provider && prefix.is_none_or(|p| ty.starts_with(p)) {
                    let errors: Vec<String> =
                        validator(file).iter_errors(&event["data"]).map(|e| e.to_string()).collect();
                    assert_eq!(errors, Vec::<String>::new(), "{}", path.display());
                    seen += 1;
                }
            }
        }
        assert!(seen >= 4, "every provider data schema has an event example; {seen} found");
    }
}
