//! `vnc-passwd`'s checks, kept apart from the terminal so they can be tested: the RFB limit of
//! 8 bytes (libvirt silently truncates longer passwords; vmgate refuses them, here and in the
//! daemon), the RFC 3339 `--valid-to`, the typed-twice confirmation, and the one line that
//! `--password-stdin` reads. The password is never taken from the command line, where `ps`
//! and shell history would show it.

use std::io::BufRead;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// VNC's DES challenge uses the password as an 8-byte key; anything longer is not used.
pub const MAX_PASSWORD_BYTES: usize = 8;

/// Why a password could not be read or would not do.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error(
        "the VNC password is {0} bytes long; VNC passwords are at most 8 bytes (the RFB DES \
         challenge uses no more), nothing was changed"
    )]
    TooLong(usize),
    #[error(
        "invalid --valid-to '{text}': {err}; give an RFC 3339 time such as \
         2030-01-31T18:00:00Z or 2030-01-31T19:00:00+01:00"
    )]
    ValidTo {
        text: String,
        err: time::error::Parse,
    },
    #[error("the two passwords do not match; nothing was changed")]
    Mismatch,
    #[error("no password entered; nothing was changed")]
    Cancelled,
    #[error("cannot prompt for the password: no terminal ({0}); pipe it in with --password-stdin")]
    NoTerminal(std::io::Error),
    #[error(
        "vnc-passwd cannot prompt for the password while commands are read from stdin; add \
         --password-stdin and put the password on the line after the command, or run \
         `vmgate vnc-passwd DOMAIN` on its own from a terminal"
    )]
    ScriptPrompt,
    #[error(
        "sasl-user cannot prompt for the password while commands are read from stdin; add \
         --password-stdin and put the password on the line after the command"
    )]
    UserScriptPrompt,
    #[error("the password is empty; nothing was changed")]
    EmptyUserPassword,
    #[error("cannot read the password from stdin: {0}")]
    Stdin(std::io::Error),
    #[error(
        "no password on stdin: --password-stdin reads it from the next line of stdin (an empty \
         line removes the domain's own password)"
    )]
    EmptyStdin,
}

/// Refuses a password the RFB handshake cannot use in full.
pub fn check_length(password: &str) -> Result<(), PasswordError> {
    if password.len() > MAX_PASSWORD_BYTES {
        Err(PasswordError::TooLong(password.len()))
    } else {
        Ok(())
    }
}

/// Checks that `--valid-to` is an RFC 3339 time. The text is sent as given: the daemon parses
/// it again, and this check only makes a typo fail before the password is asked for.
pub fn check_valid_to(text: &str) -> Result<OffsetDateTime, PasswordError> {
    OffsetDateTime::parse(text, &Rfc3339).map_err(|err| PasswordError::ValidTo {
        text: text.to_owned(),
        err,
    })
}

/// Asks for the new password twice through `prompt` (which shows its argument and reads one
/// line without echo), checking the length after the first answer so an over-long password
/// is refused before it is retyped.
pub fn confirm_new(
    domain: &str,
    mut prompt: impl FnMut(&str) -> std::io::Result<String>,
) -> Result<String, PasswordError> {
    let first =
        prompt(&format!("New VNC password for domain '{domain}': ")).map_err(prompt_error)?;
    check_length(&first)?;
    let again = prompt("Retype the new password: ").map_err(prompt_error)?;
    if first != again {
        return Err(PasswordError::Mismatch);
    }
    Ok(first)
}

/// Asks for a SASL user's new password twice through `prompt`.
pub fn confirm_user_password(
    user: &str,
    mut prompt: impl FnMut(&str) -> std::io::Result<String>,
) -> Result<String, PasswordError> {
    let first = prompt(&format!("New password for SASL user '{user}': ")).map_err(prompt_error)?;
    if first.is_empty() {
        return Err(PasswordError::EmptyUserPassword);
    }
    let again = prompt("Retype the new password: ").map_err(prompt_error)?;
    if first != again {
        return Err(PasswordError::Mismatch);
    }
    Ok(first)
}

/// Ctrl-D and Ctrl-C at the prompt cancel; any other failure means there is no terminal to
/// prompt on (opening `/dev/tty` fails without one).
fn prompt_error(err: std::io::Error) -> PasswordError {
    match err.kind() {
        std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::Interrupted => {
            PasswordError::Cancelled
        }
        _ => PasswordError::NoTerminal(err),
    }
}

/// The first line of `input`, without its line ending (`\n`, or `\r\n` from a file written on
/// Windows) and nothing else stripped: spaces are valid password characters. An empty line is
/// an empty password; no line at all is an error, so a closed stdin never removes a password.
pub fn read_line(input: &mut (impl BufRead + ?Sized)) -> Result<String, PasswordError> {
    let mut line = String::new();
    let n = input.read_line(&mut line).map_err(PasswordError::Stdin)?;
    if n == 0 {
        return Err(PasswordError::EmptyStdin);
    }
    if line.ends_with('\n') {
        line.pop();
        if line.ends_with('\r') {
            line.pop();
        }
    }
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn eight_bytes_is_the_limit() {
        assert!(check_length("").is_ok());
        assert!(check_length("12345678").is_ok());
        let err = check_length("123456789").expect_err("9 bytes");
        assert!(matches!(err, PasswordError::TooLong(9)));
        assert!(err.to_string().contains("at most 8 bytes"), "{err}");
        // Bytes, not characters: four 2-byte characters fit, five do not.
        assert!(check_length("éééé").is_ok());
        assert!(matches!(
            check_length("ééééé"),
            Err(PasswordError::TooLong(10))
        ));
    }

    #[test]
    fn valid_to_is_rfc3339() {
        let t = check_valid_to("2030-01-31T18:00:00Z").expect("UTC");
        assert_eq!(t.unix_timestamp(), 1_896_112_800);
        let t = check_valid_to("2030-01-31T19:00:00+01:00").expect("offset");
        assert_eq!(t.unix_timestamp(), 1_896_112_800);
        assert!(check_valid_to("2030-01-31T18:00:00.5Z").is_ok());
        for bad in [
            "",
            "tomorrow",
            "2030-01-31",
            "2030-01-31 18:00:00",
            "2030-01-31T18:00:00",
        ] {
            let err = check_valid_to(bad).expect_err(bad);
            let msg = err.to_string();
            assert!(
                msg.starts_with(&format!("invalid --valid-to '{bad}': ")),
                "{msg}"
            );
            assert!(msg.contains("RFC 3339"), "{msg}");
        }
    }

    fn answers(list: &[&str]) -> impl FnMut(&str) -> std::io::Result<String> {
        let mut list: Vec<String> = list.iter().rev().map(|s| (*s).to_owned()).collect();
        move |_| {
            list.pop()
                .ok_or_else(|| std::io::Error::other("asked too often"))
        }
    }

    #[test]
    fn typed_twice() {
        assert_eq!(
            confirm_new("a", answers(&["secret", "secret"])).expect("same"),
            "secret"
        );
        assert_eq!(confirm_new("a", answers(&["", ""])).expect("empty"), "");
        assert!(matches!(
            confirm_new("a", answers(&["secret", "secreT"])),
            Err(PasswordError::Mismatch)
        ));
    }

    #[test]
    fn too_long_is_refused_before_the_retype() {
        let mut asked = Vec::new();
        let err = confirm_new("alpha", |p: &str| {
            asked.push(p.to_owned());
            Ok("123456789".to_owned())
        })
        .expect_err("too long");
        assert!(matches!(err, PasswordError::TooLong(9)));
        assert_eq!(asked, ["New VNC password for domain 'alpha': "]);
    }

    #[test]
    fn no_terminal() {
        let err = confirm_new("a", |_: &str| {
            Err(std::io::Error::from_raw_os_error(6)) // ENXIO, as opening /dev/tty gives
        })
        .expect_err("no tty");
        assert!(matches!(err, PasswordError::NoTerminal(_)));
        assert!(err.to_string().contains("--password-stdin"), "{err}");
    }

    #[test]
    fn end_of_input_at_the_prompt_cancels() {
        let err = confirm_new("a", |_: &str| {
            Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof))
        })
        .expect_err("ctrl-d");
        assert!(matches!(err, PasswordError::Cancelled));
    }

    fn line(input: &[u8]) -> Result<String, PasswordError> {
        read_line(&mut Cursor::new(input))
    }

    #[test]
    fn stdin_line_keeps_everything_but_the_newline() {
        assert_eq!(line(b"secret\n").expect("line"), "secret");
        assert_eq!(line(b"secret").expect("no newline"), "secret");
        assert_eq!(line(b" s e \t\n").expect("spaces"), " s e \t");
        assert_eq!(line(b"secret\r\n").expect("crlf"), "secret");
        assert_eq!(line(b"first\nsecond\n").expect("first"), "first");
        assert_eq!(line(b"\n").expect("empty line"), "");
    }

    #[test]
    fn stdin_without_a_line_is_an_error() {
        assert!(matches!(line(b""), Err(PasswordError::EmptyStdin)));
        assert!(matches!(line(b"\xff\n"), Err(PasswordError::Stdin(_))));
    }
}
