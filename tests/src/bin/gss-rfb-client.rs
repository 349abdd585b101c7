//! The Kerberos console client as a process of its own, so that it gets its ticket cache
//! and krb5.conf through its environment (`KRB5CCNAME`, `KRB5_CONFIG`), which a test
//! process cannot set for itself. Tests run it through
//! `vmgate_tests::vnc_gssapi::process::GssClient`; it prints one JSON line.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    vmgate_tests::vnc_gssapi::process::child_main(&args)
}
