//! placeholder
#[test]
fn placeholder() {
    let _ = jsonschema::validator_for(&serde_json::json!({}));
}
