//! `make schemas-check` (the `schemas-check` binary) on a copy of the real schemas folder: it passes as
//! published, and fails naming the records when a new version of the event envelope would reject them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// A copy of the published `json/` and `examples/` folders in a fresh temporary folder, removed on drop.
struct Copy(PathBuf);

impl Copy {
    fn of_published() -> Copy {
        let crate_dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned());
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let dir = std::env::temp_dir().join(format!("schemas-check-{}-{nanos}", std::process::id()));
        for sub in ["json", "examples"] {
            copy_tree(&Path::new(&crate_dir).join(sub), &dir.join(sub));
        }
        Copy(dir)
    }

    fn run(&self) -> (Option<i32>, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_schemas-check")).arg(&self.0).output().unwrap();
        (out.status.code(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    }
}

impl Drop for Copy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn the_published_schemas_pass_and_an_incompatible_event_v2_fails_naming_the_v1_records_it_rejects() {
    let copy = Copy::of_published();
    let (code, output) = copy.run();
    assert_eq!(code, Some(0), "{output}");
    assert!(output.contains("compatible: "), "{output}");

    // event.v2: v1 plus a new required attribute, which every v1 event lacks.
    let v1: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(copy.0.join("json/event.v1.schema.json")).unwrap()).unwrap();
    let mut v2 = v1.clone();
    v2["$id"] = "https://hookline.dev/schemas/event.v2.schema.json".into();
    v2["required"].as_array_mut().unwrap().push("hooklinetenant".into());
    v2["properties"]["hooklinetenant"] = serde_json::json!({ "type": "string" });
    std::fs::write(copy.0.join("json/event.v2.schema.json"), serde_json::to_vec_pretty(&v2).unwrap()).unwrap();
    let example = std::fs::read_dir(copy.0.join("examples/event.v1")).unwrap().next().unwrap().unwrap().path();
    std::fs::create_dir_all(copy.0.join("examples/event.v2")).unwrap();
    let mut new_event: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&example).unwrap()).unwrap();
    new_event["hooklinetenant"] = "acme".into();
    std::fs::write(copy.0.join("examples/event.v2/with-tenant.json"), serde_json::to_vec(&new_event).unwrap()).unwrap();

    let (code, output) = copy.run();
    assert_eq!(code, Some(1), "{output}");
    assert!(output.contains("FAIL  event.v2"), "{output}");
    assert!(output.contains(&format!("event.v2 rejects {}", example.display())), "{output}");
    assert!(output.contains("\"hooklinetenant\" is a required property"), "{output}");
    assert!(output.contains("NOT compatible"), "{output}");
}
