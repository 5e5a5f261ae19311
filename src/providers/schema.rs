//! Function parameter schemas as providers with a format of their own take them. OpenAI accepts a
//! function whose `parameters` is `{}` or has no `type`; Anthropic (`input_schema`) and Bedrock
//! (`inputSchema.json`) require `"type": "object"` at the top, and Gemini refuses an empty schema.

use serde_json::{Map, Value};

/// The schema of a function that takes no parameters.
pub(crate) fn no_parameters() -> Value {
    let mut m = Map::new();
    m.insert("type".into(), Value::String("object".into()));
    m.insert("properties".into(), Value::Object(Map::new()));
    Value::Object(m)
}

/// An object schema with `"type": "object"` when it names no type (`{}` becomes [`no_parameters`]);
/// a schema that names a type is kept as written.
pub(crate) fn with_object_type(schema: &Map<String, Value>) -> Value {
    if schema.is_empty() {
        return no_parameters();
    }
    let mut m = schema.clone();
    if !m.contains_key("type") {
        m.insert("type".into(), Value::String("object".into()));
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn object_schemas() {
        let obj = |v: Value| v.as_object().cloned().unwrap_or_default();
        assert_eq!(with_object_type(&obj(json!({}))), json!({"type": "object", "properties": {}}));
        assert_eq!(
            with_object_type(&obj(json!({"properties": {"x": {"type": "string"}}}))),
            json!({"type": "object", "properties": {"x": {"type": "string"}}})
        );
        let typed = json!({"type": "object", "properties": {"x": {}}, "required": ["x"]});
        assert_eq!(with_object_type(&obj(typed.clone())), typed);
        assert_eq!(no_parameters(), json!({"type": "object", "properties": {}}));
    }
}
