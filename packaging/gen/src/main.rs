//! `vmgate-gen-docs OUTDIR`: writes vmgate's man pages and shell completions under OUTDIR
//! (`man/`, `completions/`); see the library. `packaging/build-deb` runs it.

use std::{path::PathBuf, process::ExitCode};

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(out), None) = (args.next(), args.next()) else {
        eprintln!("usage: vmgate-gen-docs OUTDIR");
        return ExitCode::from(2);
    };
    match vmgate_packaging::generate(&PathBuf::from(out), &vmgate_packaging::source_date()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vmgate-gen-docs: {e}");
            ExitCode::FAILURE
        }
    }
}
