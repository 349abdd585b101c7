//! A fake vmgated for the client's own tests: the real generated Admin, Domain and Console
//! services over a UNIX socket in a temp dir, backed by an in-memory list of domains, console
//! sessions and audit records, and recording the console requests it gets. It checks the
//! client's side of the wire (what it sends, how it prints, how it reports failures), not the
//! daemon's behaviour: the end-to-end tests against the real vmgated live in `tests/`.

#![allow(dead_code)] // each test binary uses a different part

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::UnixListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::{Request, Response, Status};
use vmgate_proto::v1::admin_server::{Admin, AdminServer};
use vmgate_proto::v1::console_server::{Console, ConsoleServer};
use vmgate_proto::v1::domain_server::{Domain, DomainServer};
use vmgate_proto::v1::*;

pub const ALPHA_UUID: &str = "6695eb01-f6a4-8304-79aa-97f2502e193f";
pub const BETA_UUID: &str = "0b1c3f0e-5d2a-4c61-9a55-2f1f3b0d9e11";
/// 2025-01-31T18:00:00Z, when alpha's console sessions began.
pub const SINCE: i64 = 1_738_346_400;

#[derive(Debug)]
struct State {
    driver: String,
    versions: AtomicUsize,
    domains: Mutex<Vec<DomainSummary>>,
    /// Per-domain replacements for the display `info_of` makes up.
    displays: Mutex<HashMap<String, Option<vmgate_proto::v1::Display>>>,
    /// alpha's console sessions.
    sessions: Mutex<Vec<Session>>,
    passwords: Mutex<Vec<SetPasswordRequest>>,
    /// Each audit call: `Audit` or `DomainAudit`, and its request.
    audits: Mutex<Vec<(&'static str, AuditRequest)>>,
    /// Each `Events` request.
    event_requests: Mutex<Vec<EventsRequest>>,
}

/// A running fake daemon; it stops when dropped.
pub struct Fake {
    _dir: tempfile::TempDir,
    pub socket: PathBuf,
    state: Arc<State>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Fake {
    /// Starts a fake serving `driver` with `alpha` (running, id 1) and `beta` (shut off).
    pub async fn start(driver: &str) -> Fake {
        let dir = tempfile::tempdir().expect("temp dir");
        let socket = dir.path().join("vmgate-sock");
        let listener = UnixListener::bind(&socket).expect("bind");
        let state = Arc::new(State {
            driver: driver.to_owned(),
            versions: AtomicUsize::new(0),
            domains: Mutex::new(vec![
                DomainSummary {
                    id: 1,
                    name: "alpha".into(),
                    uuid: ALPHA_UUID.into(),
                    state: DomainState::Running.into(),
                    autostart: true,
                },
                DomainSummary {
                    id: 0,
                    name: "beta".into(),
                    uuid: BETA_UUID.into(),
                    state: DomainState::ShutOff.into(),
                    autostart: false,
                },
            ]),
            displays: Mutex::new(HashMap::new()),
            sessions: Mutex::new(vec![
                Session {
                    id: 1,
                    client: "127.0.0.1:53422".into(),
                    security_type: "vnc".into(),
                    identity: String::new(),
                    user: String::new(),
                    dn: String::new(),
                    connected_since: SINCE,
                    bytes_in: 2048,
                    bytes_out: 1_258_291,
                    shared: true,
                },
                Session {
                    id: 12,
                    client: "uid 1000".into(),
                    security_type: "vencrypt-x509sasl".into(),
                    identity: "alice".into(),
                    user: "alice".into(),
                    dn: String::new(),
                    connected_since: SINCE + 61,
                    bytes_in: 100,
                    bytes_out: 5 * 1024 * 1024 * 1024,
                    shared: false,
                },
            ]),
            passwords: Mutex::new(Vec::new()),
            audits: Mutex::new(Vec::new()),
            event_requests: Mutex::new(Vec::new()),
        });
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tonic::transport::Server::builder()
            .add_service(AdminServer::new(FakeAdmin(state.clone())))
            .add_service(DomainServer::new(FakeDomain(state.clone())))
            .add_service(ConsoleServer::new(FakeConsole(state.clone())));
        let task = tokio::spawn(async move {
            let incoming = UnixListenerStream::new(listener);
            let _ = server
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                })
                .await;
        });
        Fake {
            _dir: dir,
            socket,
            state,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// `test+unix:///default?socket=...` (or the qemu form) for this fake.
    pub fn uri(&self, driver: &str) -> String {
        let path = if driver == "qemu" {
            "system"
        } else {
            "default"
        };
        format!("{driver}+unix:///{path}?socket={}", self.socket.display())
    }

    /// How many connections did the version handshake.
    pub fn handshakes(&self) -> usize {
        self.state.versions.load(Ordering::SeqCst)
    }

    /// Makes `info` report `display` for the domain `name` (running or not).
    pub fn set_display(&self, name: &str, display: Option<vmgate_proto::v1::Display>) {
        self.state
            .displays
            .lock()
            .expect("lock")
            .insert(name.to_owned(), display);
    }

    /// The `SetPassword` requests received so far.
    pub fn passwords(&self) -> Vec<SetPasswordRequest> {
        self.state.passwords.lock().expect("lock").clone()
    }

    /// The audit calls received so far: method name and request.
    pub fn audits(&self) -> Vec<(&'static str, AuditRequest)> {
        self.state.audits.lock().expect("lock").clone()
    }

    /// The `Events` requests received so far.
    pub fn event_requests(&self) -> Vec<EventsRequest> {
        self.state.event_requests.lock().expect("lock").clone()
    }

    /// Stops serving and waits until the server has shut down.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

struct FakeAdmin(Arc<State>);

#[tonic::async_trait]
impl Admin for FakeAdmin {
    async fn version(&self, _: Request<Empty>) -> Result<Response<VersionReply>, Status> {
        self.0.versions.fetch_add(1, Ordering::SeqCst);
        Ok(Response::new(VersionReply {
            daemon_version: "0.1.0".into(),
            driver: self.0.driver.clone(),
            hypervisor_version: "0.1.0".into(),
            hostname: "fakehost".into(),
            readonly: false,
        }))
    }

    async fn reload_tls(&self, _: Request<Empty>) -> Result<Response<ReloadTlsReply>, Status> {
        Ok(Response::new(ReloadTlsReply {
            reloaded: vec!["api".into()],
        }))
    }
}

struct FakeDomain(Arc<State>);

impl FakeDomain {
    fn find(&self, key: &str) -> Result<DomainSummary, Status> {
        let domains = self.0.domains.lock().expect("lock");
        domains
            .iter()
            .find(|d| d.name == key || d.uuid == key)
            .cloned()
            .ok_or_else(|| {
                Status::not_found(format!(
                    "domain '{key}' not found; list them with vmgate list --all"
                ))
            })
    }

    /// Applies `change` to the domain `key` names and answers with its info.
    fn change(
        &self,
        key: &str,
        change: impl FnOnce(&mut DomainSummary) -> Result<(), Status>,
    ) -> Result<Response<DomainInfo>, Status> {
        let found = self.find(key)?;
        let mut domains = self.0.domains.lock().expect("lock");
        let d = domains
            .iter_mut()
            .find(|d| d.uuid == found.uuid)
            .ok_or_else(|| Status::not_found("gone"))?;
        change(d)?;
        Ok(Response::new(info_of(&self.0, d)))
    }
}

fn info_of(state: &State, d: &DomainSummary) -> DomainInfo {
    let running = d.id != 0;
    let display = match state.displays.lock().expect("lock").get(&d.name) {
        Some(display) => display.clone(),
        None => running.then(|| vmgate_proto::v1::Display {
            kind: "vnc".into(),
            host: "127.0.0.1".into(),
            port: 5900,
            socket_path: String::new(),
        }),
    };
    DomainInfo {
        summary: Some(d.clone()),
        memory_mib: 128,
        vcpus: 1,
        cpu_time_ns: if running { 2_000_000_000 } else { 0 },
        state_reason: if running { "booted" } else { "shutdown" }.into(),
        display,
    }
}

fn set_state(d: &mut DomainSummary, id: u32, state: DomainState) {
    d.id = id;
    d.state = state.into();
}

/// The events `Events` sends for `d`: started, a note that 3 were lost, destroyed; then the
/// stream ends, as it would not on a real daemon before it shuts down.
fn scripted_events(d: &DomainSummary) -> Vec<Result<DomainEvent, Status>> {
    let event = |event: &str, detail: &str| DomainEvent {
        time_ms: SINCE * 1000 + 250,
        domain: d.name.clone(),
        uuid: d.uuid.clone(),
        family: "lifecycle".into(),
        event: event.into(),
        detail: detail.into(),
        lost: 0,
    };
    let lost = DomainEvent {
        time_ms: SINCE * 1000 + 500,
        family: "lost".into(),
        lost: 3,
        ..DomainEvent::default()
    };
    vec![
        Ok(event("Started", "Booted")),
        Ok(lost),
        Ok(event("Stopped", "Destroyed")),
    ]
}

#[tonic::async_trait]
impl Domain for FakeDomain {
    type EventsStream = tokio_stream::Iter<std::vec::IntoIter<Result<DomainEvent, Status>>>;

    async fn events(
        &self,
        r: Request<EventsRequest>,
    ) -> Result<Response<Self::EventsStream>, Status> {
        let r = r.into_inner();
        let key = r.domain.as_ref().map_or("alpha", |d| d.key.as_str());
        let d = self.find(key)?;
        self.0.event_requests.lock().expect("lock").push(r);
        Ok(Response::new(tokio_stream::iter(scripted_events(&d))))
    }

    async fn define(&self, r: Request<DefineRequest>) -> Result<Response<DefineReply>, Status> {
        let r = r.into_inner();
        let name = r
            .toml
            .lines()
            .find_map(|l| l.strip_prefix("name = "))
            .map(|n| n.trim_matches('"').to_owned())
            .ok_or_else(|| Status::invalid_argument(format!("{}: name is missing", r.source)))?;
        let d = DomainSummary {
            id: 0,
            name,
            uuid: "11111111-2222-4333-8444-555555555555".into(),
            state: DomainState::ShutOff.into(),
            autostart: false,
        };
        self.0.domains.lock().expect("lock").push(d.clone());
        Ok(Response::new(DefineReply {
            domain: Some(d),
            created: true,
        }))
    }

    async fn undefine(&self, r: Request<DomainRef>) -> Result<Response<Empty>, Status> {
        let d = self.find(&r.into_inner().key)?;
        self.0
            .domains
            .lock()
            .expect("lock")
            .retain(|x| x.uuid != d.uuid);
        Ok(Response::new(Empty {}))
    }

    async fn list(&self, r: Request<ListRequest>) -> Result<Response<ListReply>, Status> {
        let filter = r.into_inner().filter();
        let domains = self.0.domains.lock().expect("lock");
        let domains = domains
            .iter()
            .filter(|d| match filter {
                ListFilter::All => true,
                ListFilter::Active => d.id != 0,
                ListFilter::Inactive => d.id == 0,
            })
            .cloned()
            .collect();
        Ok(Response::new(ListReply { domains }))
    }

    async fn lookup(&self, r: Request<DomainRef>) -> Result<Response<DomainSummary>, Status> {
        self.find(&r.into_inner().key).map(Response::new)
    }

    async fn info(&self, r: Request<DomainRef>) -> Result<Response<DomainInfo>, Status> {
        self.find(&r.into_inner().key)
            .map(|d| Response::new(info_of(&self.0, &d)))
    }

    async fn start(&self, r: Request<DomainRef>) -> Result<Response<DomainInfo>, Status> {
        self.change(&r.into_inner().key, |d| {
            if d.id != 0 {
                return Err(Status::failed_precondition(format!(
                    "domain '{}' is already running",
                    d.name
                )));
            }
            set_state(d, 7, DomainState::Running);
            Ok(())
        })
    }

    async fn shutdown(&self, r: Request<ShutdownRequest>) -> Result<Response<DomainInfo>, Status> {
        let r = r.into_inner();
        let key = r.domain.map(|d| d.key).unwrap_or_default();
        self.change(&key, |d| {
            if r.wait {
                set_state(d, 0, DomainState::ShutOff);
            }
            Ok(())
        })
    }

    async fn destroy(&self, r: Request<DomainRef>) -> Result<Response<DomainInfo>, Status> {
        self.change(&r.into_inner().key, |d| {
            set_state(d, 0, DomainState::ShutOff);
            Ok(())
        })
    }

    async fn reboot(&self, r: Request<DomainRef>) -> Result<Response<DomainInfo>, Status> {
        self.change(&r.into_inner().key, |_| Ok(()))
    }

    async fn reset(&self, r: Request<DomainRef>) -> Result<Response<DomainInfo>, Status> {
        self.change(&r.into_inner().key, |_| Ok(()))
    }

    async fn suspend(&self, r: Request<DomainRef>) -> Result<Response<DomainInfo>, Status> {
        self.change(&r.into_inner().key, |d| {
            d.state = DomainState::Paused.into();
            Ok(())
        })
    }

    async fn resume(&self, r: Request<DomainRef>) -> Result<Response<DomainInfo>, Status> {
        self.change(&r.into_inner().key, |d| {
            d.state = DomainState::Running.into();
            Ok(())
        })
    }

    async fn set_autostart(
        &self,
        r: Request<AutostartRequest>,
    ) -> Result<Response<DomainSummary>, Status> {
        let r = r.into_inner();
        let key = r.domain.map(|d| d.key).unwrap_or_default();
        let info = self.change(&key, |d| {
            d.autostart = r.enable;
            Ok(())
        })?;
        let summary = info
            .into_inner()
            .summary
            .ok_or_else(|| Status::internal("no summary"))?;
        Ok(Response::new(summary))
    }

    async fn get_definition(&self, r: Request<DomainRef>) -> Result<Response<Definition>, Status> {
        let d = self.find(&r.into_inner().key)?;
        Ok(Response::new(Definition {
            toml: format!("name = \"{}\"", d.name),
        }))
    }

    async fn get_secure_definition(
        &self,
        r: Request<DomainRef>,
    ) -> Result<Response<Definition>, Status> {
        let d = self.find(&r.into_inner().key)?;
        Ok(Response::new(Definition {
            toml: format!("name = \"{}\"\n[graphics]\npasswd = \"secret\"\n", d.name),
        }))
    }
}

struct FakeConsole(Arc<State>);

impl FakeConsole {
    /// The running domain `domain` names; consoles exist only while a guest runs.
    fn running(&self, domain: Option<&DomainRef>) -> Result<DomainSummary, Status> {
        let key = domain.map(|d| d.key.as_str()).unwrap_or_default();
        let d = FakeDomain(self.0.clone()).find(key)?;
        if d.id == 0 {
            return Err(Status::failed_precondition(format!(
                "domain '{}' is not running",
                d.name
            )));
        }
        Ok(d)
    }

    fn audit_reply(
        &self,
        method: &'static str,
        r: AuditRequest,
        domain: Option<&str>,
    ) -> Response<AuditReply> {
        let record =
            |secs: i64, event: &str, domain: &str, identity: &str, reason: &str| AuditRecord {
                time_ms: secs * 1000 + 250,
                event: event.into(),
                domain: domain.into(),
                source: "127.0.0.1:53422".into(),
                security_type: "vnc".into(),
                identity: identity.into(),
                reason: reason.into(),
            };
        // Newest first, as a daemon picking the newest records may send them.
        let all = [
            record(SINCE + 60, "disconnect", "beta", "", ""),
            record(
                SINCE + 2,
                "auth-failure",
                "alpha",
                "alice",
                "wrong password",
            ),
            record(SINCE, "connect", "alpha", "", ""),
        ];
        let limit = if r.limit == 0 { 1000 } else { r.limit as usize };
        let records = all
            .into_iter()
            .filter(|a| domain.is_none_or(|d| a.domain == d))
            .filter(|a| a.time_ms >= r.since * 1000)
            .take(limit)
            .collect();
        self.0.audits.lock().expect("lock").push((method, r));
        Response::new(AuditReply { records })
    }
}

#[tonic::async_trait]
impl Console for FakeConsole {
    async fn list_sessions(&self, r: Request<DomainRef>) -> Result<Response<SessionList>, Status> {
        let d = self.running(Some(&r.into_inner()))?;
        let sessions = if d.name == "alpha" {
            self.0.sessions.lock().expect("lock").clone()
        } else {
            Vec::new()
        };
        Ok(Response::new(SessionList { sessions }))
    }

    async fn disconnect(&self, r: Request<DisconnectRequest>) -> Result<Response<Empty>, Status> {
        let r = r.into_inner();
        let d = self.running(r.domain.as_ref())?;
        let mut sessions = self.0.sessions.lock().expect("lock");
        let before = sessions.len();
        if d.name == "alpha" {
            sessions.retain(|s| s.id != r.session_id);
        }
        if sessions.len() == before {
            return Err(Status::not_found(format!(
                "domain '{}' has no console session {}; list them with vmgate console-sessions {}",
                d.name, r.session_id, d.name
            )));
        }
        Ok(Response::new(Empty {}))
    }

    async fn set_password(
        &self,
        r: Request<SetPasswordRequest>,
    ) -> Result<Response<SetPasswordReply>, Status> {
        let r = r.into_inner();
        self.0.passwords.lock().expect("lock").push(r.clone());
        let key = r.domain.as_ref().map(|d| d.key.clone()).unwrap_or_default();
        let d = FakeDomain(self.0.clone()).find(&key)?;
        let mut disconnected = 0;
        if d.name == "alpha" && r.connected() == ConnectedPolicy::Disconnect {
            let mut sessions = self.0.sessions.lock().expect("lock");
            let before = sessions.len();
            sessions.retain(|s| s.security_type != "vnc");
            disconnected = u32::try_from(before - sessions.len()).unwrap_or(u32::MAX);
        }
        Ok(Response::new(SetPasswordReply { disconnected }))
    }

    async fn domain_audit(&self, r: Request<AuditRequest>) -> Result<Response<AuditReply>, Status> {
        let r = r.into_inner();
        let key = r.domain.as_ref().map(|d| d.key.clone()).unwrap_or_default();
        let d = FakeDomain(self.0.clone()).find(&key)?;
        Ok(self.audit_reply("DomainAudit", r, Some(&d.name)))
    }

    async fn audit(&self, r: Request<AuditRequest>) -> Result<Response<AuditReply>, Status> {
        Ok(self.audit_reply("Audit", r.into_inner(), None))
    }

    // Console ACLs are tested end to end against vmgated (tests/tests/console_acl.rs).
    async fn list_acl(&self, _r: Request<DomainRef>) -> Result<Response<AclRules>, Status> {
        Err(Status::unimplemented("not in the fake daemon"))
    }

    async fn change_acl(
        &self,
        _r: Request<AclChangeRequest>,
    ) -> Result<Response<AclChangeReply>, Status> {
        Err(Status::unimplemented("not in the fake daemon"))
    }
}
