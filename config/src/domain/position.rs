//! Finds where a rule violation's field is in the definition text, so the error line can
//! start with `file:line:column`. Field names are dotted paths whose parts may carry a
//! 0-based array index (`disk[1].path`, `interface[0].mac`); a path that ends at an array
//! entry (`disk[1]`) points at the entry itself (its `[[disk]]` header).

use toml::de::{DeTable, DeValue};

use crate::located;

/// The first position of `field` in `text`, if the text has it.
pub(super) fn field_position(text: &str, field: &str) -> Option<(usize, usize)> {
    let (doc, _) = DeTable::parse_recoverable(text);
    let mut table = doc.get_ref();
    let mut parts = field.split('.').peekable();
    while let Some(part) = parts.next() {
        let (name, index) = split_index(part)?;
        let (key, value) = table.iter().find(|(k, _)| k.get_ref() == name)?;
        let (span, value) = match index {
            None => (key.span(), value.get_ref()),
            Some(i) => {
                let item = value.get_ref().as_array()?.get(i)?;
                (item.span(), item.get_ref())
            }
        };
        if parts.peek().is_none() {
            return Some(located::line_col(text, span.start));
        }
        table = match value {
            DeValue::Table(inner) => inner,
            _ => return None,
        };
    }
    None
}

/// `disk[1]` -> (`disk`, Some(1)); `name` -> (`name`, None).
fn split_index(part: &str) -> Option<(&str, Option<usize>)> {
    match part.split_once('[') {
        None => Some((part, None)),
        Some((name, rest)) => {
            let index = rest.strip_suffix(']')?.parse().ok()?;
            Some((name, Some(index)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_plain_keys_tables_and_array_entries() {
        let text = "name = \"a\"\n[graphics]\nport = 1\n\n[[disk]]\npath = \"/a\"\n\n\
                    [[disk]]\nformat = \"raw\"\npath = \"/b\"\n";
        assert_eq!(field_position(text, "name"), Some((1, 1)));
        assert_eq!(field_position(text, "graphics.port"), Some((3, 1)));
        assert_eq!(field_position(text, "disk[0].path"), Some((6, 1)));
        assert_eq!(field_position(text, "disk[1].path"), Some((10, 1)));
        assert_eq!(field_position(text, "disk[1].readonly"), None);
        assert_eq!(field_position(text, "disk[2].path"), None);
        assert_eq!(field_position(text, "disk[x].path"), None);
        assert!(field_position(text, "disk[1]").is_some());
    }

    #[test]
    fn inline_arrays_of_tables_work_too() {
        let text =
            "name = \"a\"\ninterface = [{ type = \"user\" }, { type = \"user\", mac = \"x\" }]\n";
        assert_eq!(field_position(text, "interface[1].mac"), Some((2, 50)));
    }
}
