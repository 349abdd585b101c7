//! The three ways `vmgate` runs commands: once from the command line, in an interactive shell
//! (rustyline, with history), and one per line from a non-terminal stdin. Shell and stdin lines
//! are split like a shell would and parsed with the same clap definitions as the command line,
//! so `--help` and usage errors behave the same everywhere. A failing command prints
//! `error: ...` and the shell or script goes on.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{CommandFactory, FromArgMatches, Parser};
use rustyline::DefaultEditor;
use rustyline::error::ReadlineError;
use tokio::runtime::Runtime;
use vmgate::script::split_line;

use crate::commands::{self, Command, Live};
use crate::session::Session;

// One line of the shell or of stdin: a command without the program name. The doc comment
// below is what `help` prints above the command list.
/// Type a command, or 'help COMMAND' for its options.
#[derive(Debug, Parser)]
#[command(name = "vmgate", no_binary_name = true, disable_version_flag = true)]
struct Line {
    #[command(subcommand)]
    command: Command,
}

/// The parser for shell and stdin lines, built once per shell: building clap's tree of
/// commands and options takes longer than the call a line makes, so a script of many
/// lines would mostly be rebuilding it.
struct LineParser(clap::Command);

impl LineParser {
    fn new() -> Self {
        Self(Line::command())
    }

    fn parse(&mut self, words: Vec<String>) -> Result<Command, clap::Error> {
        let matches = self.0.try_get_matches_from_mut(words)?;
        Line::from_arg_matches(&matches)
            .map(|line| line.command)
            .map_err(|e| e.format(&mut self.0))
    }
}

/// What became of one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    Failed,
    Quit,
}

/// Runs the command given on the command line. Returns whether it succeeded.
pub fn run_one(rt: &Runtime, session: &mut Session, command: Command) -> bool {
    execute(rt, session, command) != Outcome::Failed
}

/// Prints a clap parse error or help text, and gives the exit status: 0 for `--help` and
/// `--version`, 1 for usage errors (virsh's status, not clap's 2).
pub fn clap_exit(err: &clap::Error) -> ExitCode {
    let _ = err.print();
    if is_help(err) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn is_help(err: &clap::Error) -> bool {
    matches!(
        err.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    )
}

/// Reads commands from `input`, one per line, on one connection, going on after a failing
/// command. Returns whether every command succeeded.
pub fn from_reader(rt: &Runtime, session: &mut Session, input: impl BufRead + 'static) -> bool {
    session.set_script(Box::new(input));
    let mut parser = LineParser::new();
    let mut all_ok = true;
    while let Some(line) = session.script_line() {
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                eprintln!("error: cannot read commands from stdin: {e}");
                return false;
            }
        };
        match run_line(rt, session, &mut parser, &line) {
            Outcome::Ok => {}
            Outcome::Failed => all_ok = false,
            Outcome::Quit => break,
        }
    }
    all_ok
}

/// The interactive shell. Returns whether the shell itself worked (failed commands do not
/// count, as in virsh).
pub fn interactive(rt: &Runtime, session: &mut Session) -> bool {
    let mut editor = match DefaultEditor::new() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: cannot start the interactive shell: {e}");
            return false;
        }
    };
    let history = history_path();
    if let Some(path) = &history {
        // A missing history file is normal on first use.
        let _ = editor.load_history(path);
    }
    println!(
        "Welcome to vmgate, the interactive terminal for vmgated.\n\n\
         Type:  'help' for help with commands\n       'quit' to quit\n"
    );
    let mut parser = LineParser::new();
    let prompt = if session.readonly() {
        "vmgate > "
    } else {
        "vmgate # "
    };
    loop {
        match read_line_answering_probes(rt, &mut editor, prompt) {
            Ok(line) => {
                if !line.trim().is_empty() {
                    let _ = editor.add_history_entry(line.as_str());
                    save_history(&mut editor, history.as_deref());
                }
                if run_line(rt, session, &mut parser, &line) == Outcome::Quit {
                    break;
                }
            }
            // Ctrl-C abandons the line being typed, as in bash.
            Err(ReadlineError::Interrupted) => {}
            Err(ReadlineError::Eof) => {
                println!();
                break;
            }
            Err(e) => {
                eprintln!("error: cannot read the command line: {e}");
                return false;
            }
        }
    }
    true
}

/// Reads a line at the prompt on another thread while this one runs the runtime, so that
/// the connection answers the daemon's keepalive probes however long the prompt waits
/// (virsh answers them from its event loop thread too).
fn read_line_answering_probes(
    rt: &Runtime,
    editor: &mut DefaultEditor,
    prompt: &str,
) -> Result<String, ReadlineError> {
    std::thread::scope(|scope| {
        let (typed, line) = tokio::sync::oneshot::channel();
        scope.spawn(move || {
            let _ = typed.send(editor.readline(prompt));
        });
        rt.block_on(line).unwrap_or_else(|_| {
            Err(ReadlineError::Io(std::io::Error::other(
                "the prompt failed",
            )))
        })
    })
}

fn run_line(rt: &Runtime, session: &mut Session, parser: &mut LineParser, line: &str) -> Outcome {
    let words = match split_line(line) {
        Ok(Some(words)) => words,
        Ok(None) => return Outcome::Ok,
        Err(e) => {
            eprintln!("error: {e}");
            return Outcome::Failed;
        }
    };
    let takes_stdin_line = reads_password_line(&words);
    match parser.parse(words) {
        Ok(command) => execute(rt, session, command),
        Err(e) => {
            let _ = e.print();
            // In a script the password follows its command: never run it as a command, nor
            // echo it in an "unrecognized subcommand" error, because its command was mistyped.
            if takes_stdin_line && session.script_line().is_some() {
                eprintln!("error: the next line, meant as the password, was skipped");
            }
            if is_help(&e) {
                Outcome::Ok
            } else {
                Outcome::Failed
            }
        }
    }
}

/// Whether a line is meant to read the next line of stdin as a password, judged on its
/// words alone so that it holds for a line that does not parse.
fn reads_password_line(words: &[String]) -> bool {
    words.first().is_some_and(|w| w == "vnc-passwd")
        && words.iter().any(|w| w == "--password-stdin")
}

fn execute(rt: &Runtime, session: &mut Session, command: Command) -> Outcome {
    if matches!(command, Command::Quit) {
        return Outcome::Quit;
    }
    match rt.block_on(commands::run(command, session, &mut Terminal)) {
        Ok(text) => {
            emit(&text);
            Outcome::Ok
        }
        Err(e) => {
            eprintln!("error: {e}");
            Outcome::Failed
        }
    }
}

/// stdout and stderr, for the commands that print as they go.
struct Terminal;

impl Live for Terminal {
    fn line(&mut self, text: &str) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())?;
        out.flush()
    }

    fn note(&mut self, text: &str) {
        eprintln!("warning: {text}");
    }
}

/// Writes a command's output. A closed pipe (`vmgate list | head -1`) is not an error.
fn emit(text: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush())
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("error: cannot write the output: {e}");
    }
}

/// `$XDG_STATE_HOME/vmgate/history`, else `~/.local/state/vmgate/history`.
fn history_path() -> Option<PathBuf> {
    let absolute = |var: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    let state = absolute("XDG_STATE_HOME")
        .or_else(|| absolute("HOME").map(|h| h.join(".local").join("state")))?;
    Some(state.join("vmgate").join("history"))
}

fn save_history(editor: &mut DefaultEditor, path: Option<&std::path::Path>) {
    let Some(path) = path else { return };
    if let Some(dir) = path.parent()
        && std::fs::create_dir_all(dir).is_err()
    {
        return;
    }
    // History is a convenience: failing to save it must not disturb the shell.
    let _ = editor.append_history(path);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(words: &[&str]) -> Result<Command, clap::Error> {
        LineParser::new().parse(words.iter().map(|w| w.to_string()).collect())
    }

    #[test]
    fn one_parser_serves_line_after_line() {
        let mut parser = LineParser::new();
        let mut parse =
            |line: &str| parser.parse(split_line(line).expect("splits").expect("words"));
        assert!(matches!(parse("list --all"), Ok(Command::List(a)) if a.all));
        assert!(is_help(&parse("list --help").expect_err("help")));
        assert!(!is_help(&parse("start").expect_err("no domain")));
        assert!(!is_help(&parse("frobnicate").expect_err("unknown")));
        // Nothing from earlier lines sticks: no --all carried over, the domain is this line's.
        assert!(matches!(parse("list"), Ok(Command::List(a)) if !a.all));
        let Ok(Command::Start(start)) = parse("start beta") else {
            panic!("start parses after errors");
        };
        assert_eq!(start.domain, "beta");
    }

    #[test]
    fn lines_parse_with_the_command_line_definitions() {
        assert!(matches!(parse(&["list", "--all"]), Ok(Command::List(_))));
        assert!(matches!(parse(&["exit"]), Ok(Command::Quit)));
        assert!(matches!(parse(&["quit"]), Ok(Command::Quit)));
    }

    #[test]
    fn help_is_not_a_failure() {
        let err = parse(&["list", "--help"]).expect_err("help");
        assert!(is_help(&err));
        let err = parse(&["help"]).expect_err("help");
        assert!(is_help(&err));
    }

    #[test]
    fn usage_errors_are_failures() {
        let err = parse(&["start"]).expect_err("missing domain");
        assert!(!is_help(&err));
        let err = parse(&["frobnicate"]).expect_err("unknown command");
        assert!(!is_help(&err));
    }

    #[test]
    fn console_commands_parse() {
        assert!(matches!(
            parse(&["vncdisplay", "a"]),
            Ok(Command::Vncdisplay(_))
        ));
        assert!(matches!(
            parse(&["domdisplay", "a"]),
            Ok(Command::Domdisplay(_))
        ));
        assert!(matches!(
            parse(&["console-sessions", "a", "--json"]),
            Ok(Command::ConsoleSessions(_))
        ));
        assert!(matches!(
            parse(&["console-disconnect", "a", "3"]),
            Ok(Command::ConsoleDisconnect(_))
        ));
        assert!(parse(&["console-disconnect", "a", "x"]).is_err());
        assert!(matches!(
            parse(&["vnc-passwd", "a", "--password-stdin", "--connected", "fail"]),
            Ok(Command::VncPasswd(_))
        ));
        assert!(parse(&["vnc-passwd", "a", "--connected", "never"]).is_err());
        assert!(parse(&["vnc-passwd", "a", "--valid-to", "x", "--expire-now"]).is_err());
        assert!(
            parse(&["vnc-passwd", "a", "secret"]).is_err(),
            "no password argument"
        );
        assert!(matches!(
            parse(&[
                "audit", "--domain", "a", "--since", "1h", "--limit", "5", "--json"
            ]),
            Ok(Command::Audit(_))
        ));
        assert!(matches!(parse(&["audit"]), Ok(Command::Audit(_))));
    }

    #[test]
    fn event_parses_as_virsh_spells_it() {
        for line in [
            &["event"][..],
            &["event", "--all", "--loop"],
            &[
                "event",
                "--domain",
                "a",
                "--event",
                "lifecycle",
                "--timeout",
                "5",
            ],
            &["event", "--loop", "--json"],
            &["event", "--timestamp"],
            &["event", "--list"],
        ] {
            assert!(matches!(parse(line), Ok(Command::Event(_))), "{line:?}");
        }
        assert!(parse(&["event", "--event", "lost"]).is_err());
        assert!(parse(&["event", "--event", "reboot", "--all"]).is_err());
        assert!(parse(&["event", "--timeout", "0"]).is_err());
        assert!(parse(&["event", "--timestamp", "--json"]).is_err());
        assert!(parse(&["event", "--list", "--loop"]).is_err());
    }

    #[test]
    fn password_lines_are_recognised_by_their_words() {
        let words = |w: &[&str]| w.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert!(reads_password_line(&words(&[
            "vnc-passwd",
            "a",
            "--password-stdin"
        ])));
        assert!(reads_password_line(&words(&[
            "vnc-passwd",
            "--password-stdin",
            "--bad"
        ])));
        assert!(!reads_password_line(&words(&["vnc-passwd", "a"])));
        assert!(!reads_password_line(&words(&["list", "--password-stdin"])));
    }

    #[test]
    fn shutdown_timeout_needs_wait() {
        assert!(parse(&["shutdown", "a", "--timeout", "5"]).is_err());
        assert!(parse(&["shutdown", "a", "--wait", "--timeout", "5", "--force"]).is_ok());
    }
}
