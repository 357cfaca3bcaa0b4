//! Exec instances: created, started once, then inspectable for their exit code.

use std::collections::HashMap;

/// `POST /containers/{id}/exec`, decoded.
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    /// Command and arguments.
    pub cmd: Vec<String>,
    /// Extra environment.
    pub env: Vec<String>,
    /// Working directory.
    pub working_dir: Option<String>,
    /// Attach stdin.
    pub attach_stdin: bool,
    /// Allocate a tty (recorded; exec runs without one).
    pub tty: bool,
}

/// `GET /exec/{id}/json`.
#[derive(Debug, Clone)]
pub struct ExecView {
    /// Exec id.
    pub id: String,
    /// Container id.
    pub container_id: String,
    /// Whether it is running.
    pub running: bool,
    /// Exit code once finished.
    pub exit_code: Option<i32>,
    /// Pid while running.
    pub pid: u32,
    /// The request.
    pub request: ExecRequest,
}

/// All exec instances of the daemon's lifetime (not persisted, as in Docker).
#[derive(Debug, Default)]
pub(crate) struct ExecTable {
    pub(crate) execs: HashMap<String, ExecView>,
}

impl crate::Controller {
    /// Create an exec instance in a running container; returns its id.
    pub async fn exec_create(
        &self,
        container: &str,
        req: ExecRequest,
    ) -> cove_model::Result<String> {
        let st = self.state.lock().await;
        let c = st.container(container)?;
        if c.state.status != cove_model::Status::Running {
            return Err(cove_model::Error::conflict(format!("container {} is not running", c.id)));
        }
        if req.cmd.is_empty() {
            return Err(cove_model::Error::invalid("no exec command specified"));
        }
        let id = cove_model::new_id();
        let view = ExecView {
            id: id.clone(),
            container_id: c.id.to_string(),
            running: false,
            exit_code: None,
            pid: 0,
            request: req,
        };
        self.execs.lock().expect("exec table lock").execs.insert(id.clone(), view);
        Ok(id)
    }

    /// Start an exec instance (once); the caller streams the child's output and reports
    /// its exit code with [`Controller::exec_finished`](crate::Controller::exec_finished).
    pub async fn exec_start(&self, id: &str) -> cove_model::Result<tokio::process::Child> {
        let view = self.exec_inspect(id)?;
        if view.running || view.exit_code.is_some() {
            return Err(cove_model::Error::conflict(format!("exec {id} has already been started")));
        }
        let spec = cove_runtime::ExecSpec {
            cmd: view.request.cmd.clone(),
            env: view.request.env.clone(),
            working_dir: view.request.working_dir.clone(),
            stdin: view.request.attach_stdin,
        };
        let child = self.runtime.exec(&view.container_id, &spec)?;
        if let Some(v) = self.execs.lock().expect("exec table lock").execs.get_mut(id) {
            v.running = true;
            v.pid = child.id().unwrap_or(0);
        }
        Ok(child)
    }

    /// Record an exec's exit code.
    pub fn exec_finished(&self, id: &str, code: i32) {
        if let Some(v) = self.execs.lock().expect("exec table lock").execs.get_mut(id) {
            v.running = false;
            v.exit_code = Some(code);
        }
    }

    /// `GET /exec/{id}/json`.
    pub fn exec_inspect(&self, id: &str) -> cove_model::Result<ExecView> {
        self.execs
            .lock()
            .expect("exec table lock")
            .execs
            .get(id)
            .cloned()
            .ok_or_else(|| cove_model::Error::not_found(format!("No such exec instance: {id}")))
    }
}
