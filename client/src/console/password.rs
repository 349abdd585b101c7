//! `vnc-passwd`'s checks, kept apart from the terminal so they can be tested: the RFB limit of
//! 8 bytes (libvirt silently truncates longer passwords; vmgate refuses them, here and in the
//! daemon), the RFC 3339 `--valid-to`, the typed-twice confirmation, and the one line that
//! `--password-stdin` reads, for `vnc-passwd` and for `sasl-user`, each with its own limit
//! and words ([`PasswordOf`]). That line is read only up to the limit, so an endless stdin
//! is refused rather than read. The password is never taken from the command line, where
//! `ps` and shell history would show it.

use std::io::{BufRead, ErrorKind};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use vmgate_config::limits::MAX_USER_PASSWORD_BYTES;

/// VNC's DES challenge uses the password as an 8-byte key; anything longer is not used.
pub const MAX_PASSWORD_BYTES: usize = 8;

/// Whose password a command reads: each has its own limit and its own words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PasswordOf {
    /// A domain's VNC password (`vnc-passwd`); an empty one removes it.
    Domain,
    /// A SASL user's password (`sasl-user add|passwd`); never empty.
    SaslUser,
}

impl PasswordOf {
    /// The longest password the daemon accepts for it, in bytes.
    pub fn max_bytes(self) -> usize {
        match self {
            PasswordOf::Domain => MAX_PASSWORD_BYTES,
            PasswordOf::SaslUser => MAX_USER_PASSWORD_BYTES,
        }
    }

    fn too_long(self) -> PasswordError {
        match self {
            PasswordOf::Domain => PasswordError::StdinTooLong,
            PasswordOf::SaslUser => PasswordError::UserPasswordTooLong,
        }
    }

    fn no_line(self) -> PasswordError {
        match self {
            PasswordOf::Domain => PasswordError::EmptyStdin,
            PasswordOf::SaslUser => PasswordError::EmptyUserStdin,
        }
    }
}

/// Why a password could not be read or would not do.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error(
        "the VNC password is {0} bytes long; VNC passwords are at most 8 bytes (the RFB DES \
         challenge uses no more), nothing was changed"
    )]
    TooLong(usize),
    #[error(
        "the VNC password on stdin is longer than 8 bytes; VNC passwords are at most 8 bytes \
         (the RFB DES challenge uses no more), nothing was changed"
    )]
    StdinTooLong,
    #[error(
        "the password is longer than {MAX_USER_PASSWORD_BYTES} bytes, the most vmgated accepts \
         for a SASL user; nothing was changed"
    )]
    UserPasswordTooLong,
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
    #[error(
        "no password on stdin: --password-stdin reads the SASL user's password from the next \
         line of stdin; nothing was changed"
    )]
    EmptyUserStdin,
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
    check_user_password(&first)?;
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

/// Refuses a SASL user's password the daemon would refuse: empty, or over its limit.
pub fn check_user_password(password: &str) -> Result<(), PasswordError> {
    if password.is_empty() {
        Err(PasswordError::EmptyUserPassword)
    } else if password.len() > MAX_USER_PASSWORD_BYTES {
        Err(PasswordError::UserPasswordTooLong)
    } else {
        Ok(())
    }
}

/// The first line of `input`, without its line ending (`\n`, or `\r\n` from a file written on
/// Windows) and nothing else stripped: spaces are valid password characters. An empty line is
/// an empty password; no line at all is an error, so a closed stdin never removes a password.
/// At most `of`'s limit is read (and one byte more, to tell that the line is longer): the
/// rest of an over-long line is left unread.
pub fn read_line(
    input: &mut (impl BufRead + ?Sized),
    of: PasswordOf,
) -> Result<String, PasswordError> {
    // The password and a `\r` that may end it.
    let room = of.max_bytes() + 1;
    let mut line = Vec::new();
    let mut seen_any = false;
    let mut newline = false;
    loop {
        let buf = match input.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(PasswordError::Stdin(e)),
        };
        if buf.is_empty() {
            break;
        }
        seen_any = true;
        let (part, used) = match buf.iter().position(|&b| b == b'\n') {
            Some(end) => (&buf[..end], end + 1),
            None => (buf, buf.len()),
        };
        if line.len() + part.len() > room {
            return Err(of.too_long());
        }
        line.extend_from_slice(part);
        newline = used > part.len();
        input.consume(used);
        if newline {
            break;
        }
    }
    if !seen_any {
        return Err(of.no_line());
    }
    if newline && line.last() == Some(&b'\r') {
        line.pop();
    }
    if line.len() > of.max_bytes() {
        return Err(of.too_long());
    }
    String::from_utf8(line).map_err(|_| {
        PasswordError::Stdin(std::io::Error::new(
            ErrorKind::InvalidData,
            "the line is not valid UTF-8",
        ))
    })
}

/// Whether `err` left the rest of an over-long line unread (see [`read_line`]).
pub fn left_line_unread(err: &PasswordError) -> bool {
    matches!(
        err,
        PasswordError::StdinTooLong | PasswordError::UserPasswordTooLong
    )
}

/// Reads and drops the rest of the current line of `input`, a little at a time.
pub fn skip_line(input: &mut (impl BufRead + ?Sized)) -> std::io::Result<()> {
    loop {
        let buf = match input.fill_buf() {
            Ok(buf) => buf,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            return Ok(());
        }
        match buf.iter().position(|&b| b == b'\n') {
            Some(end) => {
                input.consume(end + 1);
                return Ok(());
            }
            None => {
                let n = buf.len();
                input.consume(n);
            }
        }
    }
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
        read_line(&mut Cursor::new(input), PasswordOf::Domain)
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

    #[test]
    fn each_caller_has_its_own_words_for_an_empty_stdin() {
        let domain = line(b"").expect_err("empty").to_string();
        assert!(domain.contains("the domain's own password"), "{domain}");
        let user = read_line(&mut Cursor::new(b""), PasswordOf::SaslUser)
            .expect_err("empty")
            .to_string();
        assert!(
            user.contains("SASL user's password") && !user.contains("domain"),
            "{user}"
        );
    }

    #[test]
    fn stdin_is_read_only_up_to_the_limit() {
        assert_eq!(line(b"12345678\n").expect("8 bytes"), "12345678");
        assert_eq!(line(b"12345678\r\n").expect("crlf"), "12345678");
        assert_eq!(line(b"12345678").expect("no newline"), "12345678");
        for long in [&b"123456789"[..], b"123456789\n", b"12345678\rx\n"] {
            let err = line(long).expect_err("9 bytes");
            assert!(matches!(err, PasswordError::StdinTooLong), "{err}");
            assert!(err.to_string().contains("at most 8 bytes"), "{err}");
        }
        let max = MAX_USER_PASSWORD_BYTES;
        let user = |text: &[u8]| read_line(&mut Cursor::new(text), PasswordOf::SaslUser);
        let fits = format!("{}\n", "p".repeat(max));
        assert_eq!(user(fits.as_bytes()).expect("limit").len(), max);
        // An endless stdin: only the limit and a little more is read.
        let mut endless = std::io::BufReader::with_capacity(64, std::io::repeat(b'p'));
        let err = read_line(&mut endless, PasswordOf::SaslUser).expect_err("endless");
        assert!(matches!(err, PasswordError::UserPasswordTooLong), "{err}");
        assert!(err.to_string().contains(&format!("{max} bytes")), "{err}");
    }

    #[test]
    fn the_rest_of_an_over_long_line_can_be_skipped() {
        let mut input = Cursor::new(&b"123456789abc\nlist\n"[..]);
        let err = read_line(&mut input, PasswordOf::Domain).expect_err("too long");
        assert!(left_line_unread(&err));
        skip_line(&mut input).expect("skip");
        let mut next = String::new();
        input.read_line(&mut next).expect("next line");
        assert_eq!(next, "list\n");
    }
}
