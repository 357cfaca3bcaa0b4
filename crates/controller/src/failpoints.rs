//! Failpoints: every effect of a mutating operation is a named step where the daemon can be
//! made to die, as `kill -9` would kill it, to prove that a crash at any step leaves
//! nothing leaked once the daemon is back.
//!
//! A step is named after the operation (the API route it serves, `post-networks-connect`;
//! `start` for the daemon's start-up; `background` for work no request waits for) and the
//! seam call it is about to make, counted within the operation: `post-networks-connect:
//! kernel.apply#2` is the second batch of kernel ops the connect applies. Every seam call
//! is one: the local store's and the cluster store's transactions, the kernel's ops and
//! namespaces, the firewall's transactions, the runtime's bundles and starts. The names
//! come from the seams, so a new step of an operation is covered without being listed.
//!
//! Inert unless the daemon runs with `COVE_FAILPOINTS` (or `--failpoints`): `trace` logs
//! every step passed (`failpoint: <step>`), `<step>=abort` aborts the process when it is
//! reached (after logging `failpoint: <step>: abort`), and the two combine, comma-separated.
//! Without it the seams are not wrapped at all.

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use async_trait::async_trait;
use ipnet::IpNet;

use cove_drivers::plan::Op;
use cove_firewall::{ElementDelta, NamedCounter};
use cove_kernel::{KernelError, LinkInfo, LinkStats};
use cove_model::{Error, PortBinding, Result};
use cove_runtime::{BundleSpec, ExecSpec, ImageInfo, LogEntry, RunState};
use cove_store::{KeyValue, Range, Store, StoreError, Txn, TxnResponse, Watch};

use crate::seams::{Firewall, Kernel, LogSource, Runtime, Seams};

/// What the daemon does at its steps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FailpointSpec {
    /// Log every step passed.
    pub trace: bool,
    /// Abort the process at these steps.
    pub abort: Vec<String>,
}

impl std::str::FromStr for FailpointSpec {
    type Err = Error;

    /// `trace`, `<step>=abort`, comma-separated.
    fn from_str(s: &str) -> Result<Self> {
        let mut spec = FailpointSpec::default();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.rsplit_once('=') {
                None if part == "trace" => spec.trace = true,
                Some((step, "abort")) if !step.is_empty() => spec.abort.push(step.to_string()),
                _ => {
                    return Err(Error::invalid(format!(
                        "failpoint {part:?}: expected trace or <step>=abort"
                    )))
                }
            }
        }
        Ok(spec)
    }
}

static SPEC: OnceLock<FailpointSpec> = OnceLock::new();

/// Turn the failpoints on for this process (once; later calls are ignored). Returns
/// whether they are on.
pub fn install(spec: FailpointSpec) -> bool {
    let _ = SPEC.set(spec);
    enabled()
}

/// Whether failpoints are on.
pub fn enabled() -> bool {
    SPEC.get().is_some()
}

/// The steps one operation has passed so far, per seam call.
#[derive(Debug)]
struct OpSteps {
    name: String,
    counts: HashMap<&'static str, u32>,
}

/// A handle on the running operation, to carry it onto a blocking thread.
#[derive(Debug, Clone)]
pub(crate) struct OpHandle(Arc<Mutex<OpSteps>>);

tokio::task_local! {
    static OP: OpHandle;
}

thread_local! {
    static BLOCKING_OP: std::cell::RefCell<Option<OpHandle>> = const { std::cell::RefCell::new(None) };
}

/// Run `f` as the operation `name`: the steps it passes are named after it. Only when
/// failpoints are on; otherwise `f` runs as it is.
pub async fn scope<F: Future>(name: impl Into<String>, f: F) -> F::Output {
    if !enabled() {
        return f.await;
    }
    let op = OpHandle(Arc::new(Mutex::new(OpSteps { name: name.into(), counts: HashMap::new() })));
    OP.scope(op, f).await
}

/// The running operation, if any (to carry onto a blocking thread with [`OpHandle::enter`]).
pub(crate) fn current() -> Option<OpHandle> {
    if !enabled() {
        return None;
    }
    OP.try_with(Clone::clone).ok().or_else(|| BLOCKING_OP.with(|b| b.borrow().clone()))
}

impl OpHandle {
    /// Run `f` on this thread as part of the operation.
    pub(crate) fn enter<T>(op: Option<OpHandle>, f: impl FnOnce() -> T) -> T {
        let Some(op) = op else { return f() };
        BLOCKING_OP.with(|b| *b.borrow_mut() = Some(op));
        let out = f();
        BLOCKING_OP.with(|b| *b.borrow_mut() = None);
        out
    }
}

/// The step `seam` of the running operation is about to happen: log it, or die there.
fn step(seam: &'static str) {
    let Some(spec) = SPEC.get() else { return };
    let name = match current() {
        Some(op) => {
            let mut op = op.0.lock().unwrap_or_else(PoisonError::into_inner);
            let n = op.counts.entry(seam).or_insert(0);
            *n += 1;
            let n = *n;
            format!("{}:{seam}#{n}", op.name)
        }
        None => format!("background:{seam}"),
    };
    if spec.abort.contains(&name) {
        // Unbuffered, before the abort: the test's proof the step was reached.
        eprintln!("failpoint: {name}: abort");
        std::process::abort();
    }
    if spec.trace {
        eprintln!("failpoint: {name}");
    }
}

/// The seams, each wrapped so that its effects are steps, when failpoints are on.
pub(crate) fn wrap(seams: Seams) -> Seams {
    if !enabled() {
        return seams;
    }
    let cluster = seams.cluster.map(|mut c| {
        c.store = cove_store::Records::new(Arc::new(StepStore {
            inner: c.store.store().clone(),
            seam: "cluster.commit",
        }));
        c
    });
    Seams {
        kernel: Arc::new(StepKernel(seams.kernel)),
        runtime: Arc::new(StepRuntime(seams.runtime)),
        firewall: Arc::new(StepFirewall(seams.firewall)),
        store: cove_store::Records::new(Arc::new(StepStore {
            inner: seams.store.store().clone(),
            seam: "store.commit",
        })),
        cluster,
    }
}

/// A store whose write transactions are steps.
#[derive(Debug)]
struct StepStore {
    inner: Arc<dyn Store>,
    seam: &'static str,
}

impl Store for StepStore {
    fn get(&self, key: &str) -> std::result::Result<Option<KeyValue>, StoreError> {
        self.inner.get(key)
    }
    fn range(&self, prefix: &str) -> std::result::Result<Range, StoreError> {
        self.inner.range(prefix)
    }
    fn txn(&self, txn: Txn) -> std::result::Result<TxnResponse, StoreError> {
        if !txn.success.is_empty() || !txn.failure.is_empty() {
            step(self.seam);
        }
        self.inner.txn(txn)
    }
    fn watch(&self, prefix: &str, start_revision: i64) -> std::result::Result<Watch, StoreError> {
        self.inner.watch(prefix, start_revision)
    }
}

/// A kernel whose changes are steps.
#[derive(Debug)]
struct StepKernel(Arc<dyn Kernel>);

#[async_trait]
impl Kernel for StepKernel {
    async fn apply(&self, ops: &[Op]) -> std::result::Result<(), KernelError> {
        if ops.is_empty() {
            return self.0.apply(ops).await;
        }
        step("kernel.apply");
        // A crash halfway through a batch, too: the kernel holds part of it.
        if ops.len() > 1 {
            let (first, rest) = ops.split_at(ops.len() / 2);
            self.0.apply(first).await?;
            step("kernel.apply-half");
            if let Err(e) = self.0.apply(rest).await {
                // One batch to the caller: what was applied of it goes again.
                let undo: Vec<Op> = first.iter().rev().filter_map(Op::inverse).collect();
                self.0.teardown(&undo).await;
                return Err(e);
            }
            return Ok(());
        }
        self.0.apply(ops).await
    }
    async fn teardown(&self, ops: &[Op]) -> Vec<KernelError> {
        if !ops.is_empty() {
            step("kernel.teardown");
        }
        self.0.teardown(ops).await
    }
    async fn create_netns(&self, path: &Path) -> std::result::Result<(), KernelError> {
        step("kernel.create-netns");
        self.0.create_netns(path).await
    }
    async fn remove_netns(&self, path: &Path) -> std::result::Result<(), KernelError> {
        step("kernel.remove-netns");
        self.0.remove_netns(path).await
    }
    async fn link_exists(&self, name: &str) -> std::result::Result<bool, KernelError> {
        self.0.link_exists(name).await
    }
    async fn links(&self) -> std::result::Result<Vec<LinkInfo>, KernelError> {
        self.0.links().await
    }
    async fn link_stats(&self) -> std::result::Result<Vec<LinkStats>, KernelError> {
        self.0.link_stats().await
    }
    async fn observe_host(
        &self,
        sysctl_keys: &[String],
    ) -> std::result::Result<cove_plan::HostState, KernelError> {
        self.0.observe_host(sysctl_keys).await
    }
    async fn route_prefixes(&self) -> std::result::Result<Vec<IpNet>, KernelError> {
        self.0.route_prefixes().await
    }
    async fn reap_condemned(&self) -> std::result::Result<(), KernelError> {
        self.0.reap_condemned().await
    }
    async fn forget_flows_to(
        &self,
        ip: std::net::IpAddr,
    ) -> std::result::Result<usize, KernelError> {
        self.0.forget_flows_to(ip).await
    }
    fn owned_link_removals(
        &self,
    ) -> std::result::Result<tokio::sync::mpsc::Receiver<()>, KernelError> {
        self.0.owned_link_removals()
    }
    fn read_sysctl(&self, key: &str) -> std::result::Result<String, KernelError> {
        self.0.read_sysctl(key)
    }
    async fn bind_in_netns(
        &self,
        netns: &Path,
        addr: std::net::SocketAddr,
    ) -> std::io::Result<(std::net::UdpSocket, std::net::TcpListener)> {
        self.0.bind_in_netns(netns, addr).await
    }
    fn reserve_ports(
        &self,
        owner: &str,
        bindings: &[PortBinding],
        has_v6: bool,
    ) -> Result<Vec<PortBinding>> {
        step("kernel.reserve-ports");
        self.0.reserve_ports(owner, bindings, has_v6)
    }
    fn release_ports(&self, owner: &str) {
        self.0.release_ports(owner)
    }
}

/// A firewall whose transactions are steps.
#[derive(Debug)]
struct StepFirewall(Arc<dyn Firewall>);

#[async_trait]
impl Firewall for StepFirewall {
    async fn apply_ruleset(&self, ruleset: &str) -> std::result::Result<(), KernelError> {
        step("firewall.ruleset");
        self.0.apply_ruleset(ruleset).await
    }
    async fn apply_delta(&self, delta: &ElementDelta) -> std::result::Result<(), KernelError> {
        step("firewall.delta");
        self.0.apply_delta(delta).await
    }
    async fn counters(&self, table: &str) -> std::result::Result<Vec<NamedCounter>, KernelError> {
        self.0.counters(table).await
    }
    fn watch_foreign_changes(
        &self,
        tables: &[&str],
    ) -> std::result::Result<tokio::sync::mpsc::Receiver<()>, KernelError> {
        self.0.watch_foreign_changes(tables)
    }
}

/// A runtime whose changes are steps.
#[derive(Debug)]
struct StepRuntime(Arc<dyn Runtime>);

#[async_trait]
impl Runtime for StepRuntime {
    fn find_image(&self, reference: &str) -> Result<ImageInfo> {
        self.0.find_image(reference)
    }
    fn import_image(&self, tar: Vec<u8>, reference: &str) -> Result<ImageInfo> {
        self.0.import_image(tar, reference)
    }
    fn load_images(&self, tar: Vec<u8>) -> Result<Vec<ImageInfo>> {
        self.0.load_images(tar)
    }
    fn list_images(&self) -> Result<Vec<ImageInfo>> {
        self.0.list_images()
    }
    fn remove_image(&self, reference: &str) -> Result<ImageInfo> {
        self.0.remove_image(reference)
    }
    fn create_bundle(&self, spec: &BundleSpec) -> Result<()> {
        step("runtime.create-bundle");
        self.0.create_bundle(spec)
    }
    fn write_etc_file(&self, id: &str, name: &str, content: &str) -> Result<()> {
        self.0.write_etc_file(id, name, content)
    }
    fn start(&self, id: &str, netns: Option<&Path>) -> Result<u32> {
        step("runtime.start");
        let pid = self.0.start(id, netns)?;
        step("runtime.started");
        Ok(pid)
    }
    fn state(&self, id: &str) -> RunState {
        self.0.state(id)
    }
    async fn wait(&self, id: &str) -> i32 {
        self.0.wait(id).await
    }
    fn kill(&self, id: &str, signal: i32) -> Result<()> {
        step("runtime.kill");
        self.0.kill(id, signal)
    }
    fn cleanup(&self, id: &str) -> Result<()> {
        step("runtime.cleanup");
        self.0.cleanup(id)
    }
    fn remove(&self, id: &str) -> Result<()> {
        step("runtime.remove");
        self.0.remove(id)
    }
    fn logs(
        &self,
        id: &str,
        follow: bool,
        tail: Option<usize>,
    ) -> Result<tokio::sync::mpsc::Receiver<LogEntry>> {
        self.0.logs(id, follow, tail)
    }
    fn log_follower(&self, id: &str) -> Result<Box<dyn LogSource>> {
        self.0.log_follower(id)
    }
    fn exec(&self, id: &str, spec: &ExecSpec) -> Result<tokio::process::Child> {
        self.0.exec(id, spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_bad_ones_name_the_problem() {
        let s: FailpointSpec = "trace, post-networks-create:kernel.apply#1=abort".parse().unwrap();
        assert!(s.trace);
        assert_eq!(s.abort, ["post-networks-create:kernel.apply#1"]);
        assert_eq!("".parse::<FailpointSpec>().unwrap(), FailpointSpec::default());
        for bad in ["x", "x=panic", "=abort"] {
            let e = bad.parse::<FailpointSpec>().unwrap_err();
            assert!(e.message.contains("expected trace or <step>=abort"), "{}", e.message);
        }
    }
}
