//! A small YAML writer for JSON values, enough for `deploy/crd.yaml` (no YAML library in the
//! build: the file is only ever written, and every JSON string is a valid YAML double-quoted
//! scalar).
//!
//! Block mappings and sequences, two-space indentation, keys sorted. A string is written plain only when YAML cannot read it as anything but that
//! string (letters, digits and `-_./` that do not start like a number or an indicator, and not one
//! of YAML 1.1's booleans or nulls); everything else is written as a JSON string literal.

use serde_json::Value;

/// A generated CustomResourceDefinition as YAML (`deploy/crd.yaml`, `deploy/environment-crd.yaml`),
/// under a header naming the type it is `generated_from` and the command that `regenerate`s it.
pub fn crd_file(
    crd: &k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    generated_from: &str,
    regenerate: &str,
) -> String {
    // A CRD always serialises; a failure here would be a bug in the derive, not in input.
    let value = serde_json::to_value(crd).unwrap_or_default();
    let mut out =
        format!("# Generated from {generated_from}; do not edit.\n# Regenerate: {regenerate}\n");
    out.push_str(&to_yaml(&value));
    out
}

/// `value` as a YAML document (no `---`), ending in a newline.
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => write_map(&mut out, map, 0),
        Value::Array(items) if !items.is_empty() => write_seq(&mut out, items, 0),
        scalar => {
            out.push_str(&scalar_text(scalar));
            out.push('\n');
        }
    }
    out
}

fn indent(out: &mut String, n: usize) {
    out.extend(std::iter::repeat_n(' ', n));
}

/// The map's entries sorted by key, whatever order serde_json keeps them in.
fn sorted(map: &serde_json::Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries
}

fn write_map(out: &mut String, map: &serde_json::Map<String, Value>, level: usize) {
    for (key, value) in sorted(map) {
        indent(out, level);
        out.push_str(&string_text(key));
        out.push(':');
        write_value_after_key(out, value, level);
    }
}

fn write_value_after_key(out: &mut String, value: &Value, level: usize) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            write_map(out, map, level + 2);
        }
        // A sequence under a key sits at the key's indentation (the usual Kubernetes style).
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            write_seq(out, items, level);
        }
        scalar => {
            out.push(' ');
            out.push_str(&scalar_text(scalar));
            out.push('\n');
        }
    }
}

fn write_seq(out: &mut String, items: &[Value], level: usize) {
    for item in items {
        indent(out, level);
        out.push('-');
        match item {
            Value::Object(map) if !map.is_empty() => {
                // The first entry shares the dash's line; the rest line up under it.
                let mut first = true;
                for (key, value) in sorted(map) {
                    if first {
                        out.push(' ');
                        first = false;
                    } else {
                        indent(out, level + 2);
                    }
                    out.push_str(&string_text(key));
                    out.push(':');
                    write_value_after_key(out, value, level + 2);
                }
            }
            Value::Array(inner) if !inner.is_empty() => {
                out.push('\n');
                write_seq(out, inner, level + 2);
            }
            scalar => {
                out.push(' ');
                out.push_str(&scalar_text(scalar));
                out.push('\n');
            }
        }
    }
}

fn scalar_text(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string_text(s),
        Value::Object(_) => "{}".to_owned(),
        Value::Array(_) => "[]".to_owned(),
    }
}

/// Words YAML 1.1 or 1.2 reads as booleans or null.
const RESERVED: &[&str] = &[
    "y", "yes", "n", "no", "true", "false", "on", "off", "null", "~",
];

fn string_text(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
        && s.as_bytes()[0].is_ascii_alphabetic()
        && !RESERVED.iter().any(|r| r.eq_ignore_ascii_case(s));
    if plain {
        s.to_owned()
    } else {
        // A JSON string literal is a YAML double-quoted scalar with the same escapes.
        Value::String(s.to_owned()).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn layout() {
        let v = json!({
            "apiVersion": "v1",
            "list": [{"a": 1, "b": {"c": true}}, "x", [], {}],
            "empty": {},
            "nested": {"k": [1, 2]},
            "text": "two\nlines: \"quoted\"",
        });
        let want = "\
apiVersion: v1
empty: {}
list:
- a: 1
  b:
    c: true
- x
- []
- {}
nested:
  k:
  - 1
  - 2
text: \"two\\nlines: \\\"quoted\\\"\"
";
        assert_eq!(to_yaml(&v), want);
    }

    #[test]
    fn ambiguous_strings_are_quoted() {
        for (s, want) in [
            ("lanes", "lanes"),
            ("lane.dev/v1alpha1", "lane.dev/v1alpha1"),
            (".spec.owner", "\".spec.owner\""),
            ("true", "\"true\""),
            ("No", "\"No\""),
            ("1", "\"1\""),
            ("", "\"\""),
            ("a b", "\"a b\""),
            ("^[a-z]$", "\"^[a-z]$\""),
            ("x: y", "\"x: y\""),
            ("é", "\"é\""),
            ("-x", "\"-x\""),
        ] {
            assert_eq!(string_text(s), want, "{s:?}");
        }
    }
}
