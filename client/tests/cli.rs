//! The `vmgate` binary against the fake daemon: exact output of the commands, exit statuses,
//! error lines, and stdin mode running many commands on one connection.

mod fake;
mod run;

use fake::{ALPHA_UUID, Fake};
use run::vmgate;

async fn ok(fake: &Fake, args: &[&str]) -> String {
    let run = vmgate(&fake.uri("test"), args, None).await;
    assert!(run.ok, "{args:?} failed: {}", run.stderr);
    assert_eq!(run.stderr, "", "{args:?}");
    run.stdout
}

#[tokio::test(flavor = "multi_thread")]
async fn list_tables() {
    let fake = Fake::start("test").await;
    assert_eq!(
        ok(&fake, &["list", "--all"]).await,
        " Id   Name    State\n------------------------\n 1    alpha   running\n -    beta    shut off\n"
    );
    assert_eq!(
        ok(&fake, &["list"]).await,
        " Id   Name    State\n-----------------------\n 1    alpha   running\n"
    );
    assert_eq!(
        ok(&fake, &["list", "--inactive"]).await,
        " Id   Name   State\n-----------------------\n -    beta   shut off\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn list_json() {
    let fake = Fake::start("test").await;
    let text = ok(&fake, &["list", "--all", "--json"]).await;
    let value: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(value[0]["id"], 1);
    assert_eq!(value[0]["state"], "running");
    assert_eq!(value[1]["id"], serde_json::Value::Null);
    assert_eq!(value[1]["uuid"], fake::BETA_UUID);
    assert_eq!(value[1]["autostart"], false);
}

#[tokio::test(flavor = "multi_thread")]
async fn lifecycle_messages_use_the_daemons_name() {
    let fake = Fake::start("test").await;
    assert_eq!(
        ok(&fake, &["start", "beta"]).await,
        "Domain 'beta' started\n"
    );
    assert_eq!(
        ok(&fake, &["suspend", ALPHA_UUID]).await,
        "Domain 'alpha' suspended\n"
    );
    assert_eq!(
        ok(&fake, &["resume", "alpha"]).await,
        "Domain 'alpha' resumed\n"
    );
    assert_eq!(
        ok(&fake, &["reboot", "alpha"]).await,
        "Domain 'alpha' is being rebooted\n"
    );
    assert_eq!(
        ok(&fake, &["reset", "alpha"]).await,
        "Domain 'alpha' was reset\n"
    );
    assert_eq!(
        ok(&fake, &["shutdown", "alpha"]).await,
        "Domain 'alpha' is being shutdown\n"
    );
    assert_eq!(
        ok(&fake, &["shutdown", "alpha", "--wait", "--timeout", "3"]).await,
        "Domain 'alpha' has been shut down\n"
    );
    assert_eq!(
        ok(&fake, &["destroy", "beta"]).await,
        "Domain 'beta' destroyed\n"
    );
    assert_eq!(
        ok(&fake, &["autostart", "beta"]).await,
        "Domain 'beta' marked as autostarted\n"
    );
    assert_eq!(
        ok(&fake, &["autostart", "--disable", "beta"]).await,
        "Domain 'beta' unmarked as autostarted\n"
    );
    assert_eq!(
        ok(&fake, &["undefine", ALPHA_UUID]).await,
        "Domain 'alpha' has been undefined\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn queries() {
    let fake = Fake::start("test").await;
    assert_eq!(ok(&fake, &["domstate", "alpha"]).await, "running\n");
    assert_eq!(
        ok(&fake, &["domstate", "--reason", "beta"]).await,
        "shut off (shutdown)\n"
    );
    assert_eq!(
        ok(&fake, &["domuuid", "alpha"]).await,
        format!("{ALPHA_UUID}\n")
    );
    assert_eq!(ok(&fake, &["domname", ALPHA_UUID]).await, "alpha\n");
    let info = ok(&fake, &["dominfo", "alpha"]).await;
    assert!(info.contains("Id:             1\n"), "{info}");
    assert!(info.contains("CPU time:       2.0s\n"), "{info}");
    assert!(
        info.contains("Graphics:       vnc://127.0.0.1:0\n"),
        "{info}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&fake, &["dominfo", "--json", "beta"]).await).expect("JSON");
    assert_eq!(json["name"], "beta");
    assert_eq!(json["graphics"], serde_json::Value::Null);
    assert_eq!(
        ok(&fake, &["dumpconf", "alpha"]).await,
        "name = \"alpha\"\n"
    );
    let secure = ok(&fake, &["dumpconf", "--security-info", "alpha"]).await;
    assert!(secure.contains("passwd"), "{secure}");
    assert_eq!(
        ok(&fake, &["version"]).await,
        "Client: vmgate 0.1.0\nDaemon: vmgated 0.1.0\nDriver: test\nHypervisor: test 0.1.0\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn define_reads_the_file() {
    let fake = Fake::start("test").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("gamma.toml");
    std::fs::write(&file, "name = \"gamma\"\n").expect("write");
    let path = file.display().to_string();
    assert_eq!(
        ok(&fake, &["define", &path]).await,
        format!("Domain 'gamma' defined from {path}\n")
    );
    let missing = dir.path().join("missing.toml").display().to_string();
    let run = vmgate(&fake.uri("test"), &["define", &missing], None).await;
    assert!(!run.ok);
    assert!(
        run.stderr
            .starts_with(&format!("error: cannot read {missing}: ")),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn daemon_errors_are_one_line_and_exit_1() {
    let fake = Fake::start("test").await;
    let run = vmgate(&fake.uri("test"), &["start", "nosuch"], None).await;
    assert!(!run.ok);
    assert_eq!(run.stdout, "");
    assert_eq!(
        run.stderr,
        "error: domain 'nosuch' not found; list them with vmgate list --all\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn stdin_commands_share_one_connection_and_go_on_after_errors() {
    let fake = Fake::start("test").await;
    let script = "# a comment\n\nstart nosuch\nstart beta\n  domstate 'beta'  \nlist --all\n";
    let run = vmgate(&fake.uri("test"), &[], Some(script)).await;
    assert!(!run.ok, "one command failed, so the exit status is 1");
    assert_eq!(
        run.stdout,
        "Domain 'beta' started\nrunning\n Id   Name    State\n-----------------------\n \
         1    alpha   running\n 7    beta    running\n"
    );
    assert_eq!(
        run.stderr,
        "error: domain 'nosuch' not found; list them with vmgate list --all\n"
    );
    assert_eq!(fake.handshakes(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn stdin_all_good_exits_0_and_quit_stops() {
    let fake = Fake::start("test").await;
    let run = vmgate(
        &fake.uri("test"),
        &[],
        Some("domstate alpha\nquit\nstart nosuch\n"),
    )
    .await;
    assert!(run.ok, "{}", run.stderr);
    assert_eq!(run.stdout, "running\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn stdin_help_and_usage_errors() {
    let fake = Fake::start("test").await;
    let run = vmgate(&fake.uri("test"), &[], Some("list --help\n")).await;
    assert!(run.ok, "{}", run.stderr);
    assert!(run.stdout.contains("--inactive"), "{}", run.stdout);
    let run = vmgate(&fake.uri("test"), &[], Some("start\n")).await;
    assert!(!run.ok);
    assert!(run.stderr.starts_with("error: "), "{}", run.stderr);
    assert_eq!(fake.handshakes(), 0, "no command needed the daemon");
}

#[tokio::test(flavor = "multi_thread")]
async fn driver_mismatch_and_missing_daemon() {
    let fake = Fake::start("qemu").await;
    let run = vmgate(&fake.uri("test"), &["list"], None).await;
    assert!(!run.ok);
    assert!(
        run.stderr
            .starts_with("error: this daemon serves the qemu driver; connect with qemu:///system"),
        "{}",
        run.stderr
    );
    let run = vmgate(
        "test+unix:///default?socket=/nonexistent/sock",
        &["list"],
        None,
    )
    .await;
    assert!(!run.ok);
    assert!(run.stderr.contains("/nonexistent/sock"), "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn uri_needs_no_daemon() {
    let run = vmgate("test+unix:///default?socket=/nowhere/sock", &["uri"], None).await;
    assert!(run.ok, "{}", run.stderr);
    assert_eq!(run.stdout, "test:///default?socket=/nowhere/sock\n");
    let run = vmgate("qemu:///session", &["uri"], None).await;
    assert!(!run.ok);
    assert_eq!(
        run.stderr,
        "error: path /session is not served; vmgate serves qemu:///system and test:///default\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn event_prints_the_first_event_as_virsh_does() {
    let fake = Fake::start("test").await;
    assert_eq!(
        ok(&fake, &["event"]).await,
        "event 'lifecycle' for domain 'alpha': Started Booted\nevents received: 1\n"
    );
    assert_eq!(
        ok(&fake, &["event", "--all", "--timestamp"]).await,
        "2025-01-31 18:00:00.250+0000: event 'lifecycle' for domain 'alpha': Started Booted\n\
         events received: 1\n"
    );
    let json = ok(&fake, &["event", "--json"]).await;
    let value: serde_json::Value = serde_json::from_str(&json).expect("one JSON object");
    assert_eq!(value["event"], "Started");
    assert_eq!(value["uuid"], ALPHA_UUID);
}

#[tokio::test(flavor = "multi_thread")]
async fn event_sends_its_filters() {
    let fake = Fake::start("test").await;
    ok(&fake, &["event", "--domain", "beta", "--event", "reboot"]).await;
    ok(&fake, &["event"]).await;
    let requests = fake.event_requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[0].domain.as_ref().map(|d| d.key.as_str()),
        Some("beta")
    );
    assert_eq!(requests[0].family, "reboot");
    assert_eq!(requests[1].domain, None);
    assert_eq!(requests[1].family, "");
}

#[tokio::test(flavor = "multi_thread")]
async fn event_loop_reports_lost_events_and_a_stream_that_ends() {
    let fake = Fake::start("test").await;
    let run = vmgate(&fake.uri("test"), &["event", "--loop"], None).await;
    assert!(!run.ok, "the daemon ending the stream is a failure");
    assert_eq!(
        run.stdout,
        "event 'lifecycle' for domain 'alpha': Started Booted\n\
         event 'lifecycle' for domain 'alpha': Stopped Destroyed\n"
    );
    assert_eq!(
        run.stderr,
        "warning: 3 events were lost: this listener fell behind the daemon\n\
         error: vmgated ended the event stream\n"
    );
    let run = vmgate(&fake.uri("test"), &["event", "--loop", "--json"], None).await;
    let lines: Vec<serde_json::Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 3, "{}", run.stdout);
    assert_eq!(
        (lines[1]["family"].as_str(), lines[1]["lost"].as_u64()),
        (Some("lost"), Some(3))
    );
    assert_eq!(run.stderr, "error: vmgated ended the event stream\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn event_errors_and_the_list_of_families() {
    let fake = Fake::start("test").await;
    let run = vmgate(&fake.uri("test"), &["event", "--domain", "nosuch"], None).await;
    assert!(!run.ok);
    assert_eq!(
        run.stderr,
        "error: domain 'nosuch' not found; list them with vmgate list --all\n"
    );
    assert_eq!(run.stdout, "");
    assert_eq!(
        ok(&fake, &["event", "--list"]).await,
        "lifecycle\nreboot\nreset\n"
    );
    assert_eq!(fake.handshakes(), 1, "--list needs no daemon");
}
