//! Splitting the lines of the interactive shell and of commands read from stdin into
//! arguments, the way a POSIX shell would (quotes and backslashes; no expansion). Blank lines
//! and `#` comments are skipped. The resulting words go to the same clap parser as the command
//! line, so this module knows nothing about the commands themselves.

/// A line that cannot be split into words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot split the line into words: {0}; close the quote or escape it with \\")]
pub struct SplitError(String);

/// The words of `line`, or `None` for a blank line or a comment.
pub fn split_line(line: &str) -> Result<Option<Vec<String>>, SplitError> {
    let words = shell_words::split(line).map_err(|e| SplitError(e.to_string()))?;
    Ok((!words.is_empty()).then_some(words))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Option<Vec<String>> {
        split_line(line).expect("splits")
    }

    #[test]
    fn blank_and_comment_lines_are_skipped() {
        assert_eq!(words(""), None);
        assert_eq!(words("   \t "), None);
        assert_eq!(words("# a comment"), None);
        assert_eq!(words("   # indented comment"), None);
    }

    #[test]
    fn plain_words() {
        assert_eq!(
            words("list --all"),
            Some(vec!["list".into(), "--all".into()])
        );
        assert_eq!(
            words("  start   alpha  "),
            Some(vec!["start".into(), "alpha".into()])
        );
    }

    #[test]
    fn quotes_and_escapes() {
        assert_eq!(
            words(r#"define "my guest.toml""#),
            Some(vec!["define".into(), "my guest.toml".into()])
        );
        assert_eq!(
            words(r"define my\ guest.toml"),
            Some(vec!["define".into(), "my guest.toml".into()])
        );
        assert_eq!(
            words("start 'a b'"),
            Some(vec!["start".into(), "a b".into()])
        );
    }

    #[test]
    fn trailing_comment_is_dropped() {
        assert_eq!(
            words("start alpha # boot it"),
            Some(vec!["start".into(), "alpha".into()])
        );
    }

    #[test]
    fn hash_inside_a_word_is_kept() {
        assert_eq!(words("start a#b"), Some(vec!["start".into(), "a#b".into()]));
    }

    #[test]
    fn unclosed_quote_is_an_error() {
        let err = split_line("start 'alpha").expect_err("unclosed quote");
        assert!(err.to_string().contains("close the quote"), "{err}");
    }
}
