//! Reading a container's json-file log (`container.log`, written by the shim), once or
//! following it until the run exits.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cove_model::Error;
use tokio::sync::mpsc;

use crate::shim::{log_path, LogLine};
use crate::{LogEntry, RunState, Runtime};

const POLL: Duration = Duration::from_millis(50);

/// Incremental reader of complete JSON lines of a growing file.
struct LogReader {
    path: PathBuf,
    file: Option<File>,
    partial: Vec<u8>,
}

impl LogReader {
    fn new(path: PathBuf) -> Self {
        LogReader { path, file: None, partial: Vec::new() }
    }

    /// Entries completed since the last call.
    fn read_new(&mut self) -> Vec<LogEntry> {
        if self.file.is_none() {
            self.file = File::open(&self.path).ok();
        }
        let Some(f) = self.file.as_mut() else { return Vec::new() };
        let _ = f.read_to_end(&mut self.partial);
        let Some(last_nl) = self.partial.iter().rposition(|&b| b == b'\n') else {
            return Vec::new();
        };
        let rest = self.partial.split_off(last_nl + 1);
        let complete = std::mem::replace(&mut self.partial, rest);
        complete.split(|&b| b == b'\n').filter(|l| !l.is_empty()).filter_map(parse_line).collect()
    }
}

/// A reader positioned at the end of a container's log at the moment it was opened: it
/// yields exactly the output written afterwards, even if the container's directory is
/// removed meanwhile (the open file keeps the data). For attaching before a start.
#[derive(Debug)]
pub struct LogFollower(LogReader);

impl LogFollower {
    /// Entries written since the last call (complete lines only).
    pub fn read_new(&mut self) -> Vec<LogEntry> {
        self.0.read_new()
    }
}

impl std::fmt::Debug for LogReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LogReader({})", self.path.display())
    }
}

fn parse_line(line: &[u8]) -> Option<LogEntry> {
    let l: LogLine = serde_json::from_slice(line).ok()?;
    Some(LogEntry { stream: l.stream, line: l.log.into_bytes(), time: l.time })
}

impl Runtime {
    /// The container's log entries (stdout and stderr, docker json-file format in
    /// `data_root/containers/<id>/container.log`): the existing ones (only the last `tail`
    /// when Some), then with `follow`, new ones until the current run has exited and the
    /// log is drained. The channel closes at the end. Reads on its own thread.
    pub fn logs(
        &self,
        id: &str,
        follow: bool,
        tail: Option<usize>,
    ) -> Result<mpsc::Receiver<LogEntry>, Error> {
        let bundle = self.bundle_dir(id)?;
        if !bundle.is_dir() {
            return Err(Error::not_found(format!("no bundle for container {id}")));
        }
        let (tx, rx) = mpsc::channel(256);
        let rt = self.clone();
        let owned_id = id.to_string();
        std::thread::Builder::new()
            .name("cove-logs".into())
            .spawn(move || stream_log(&rt, &owned_id, &bundle, follow, tail, tx))
            .map_err(|e| Error::internal(format!("read logs of container {id}: {e}")))?;
        Ok(rx)
    }
}

impl Runtime {
    /// Open the container's log at its current end (creating it, as the shim appends to
    /// the same file) for following output from now on.
    pub fn log_follower(&self, id: &str) -> Result<LogFollower, Error> {
        let bundle = self.bundle_dir(id)?;
        if !bundle.is_dir() {
            return Err(Error::not_found(format!("no bundle for container {id}")));
        }
        let path = log_path(&bundle);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&path)
            .map_err(|e| Error::internal(format!("open log of container {id}: {e}")))?;
        use std::io::Seek;
        file.seek(std::io::SeekFrom::End(0))
            .map_err(|e| Error::internal(format!("seek log of container {id}: {e}")))?;
        Ok(LogFollower(LogReader { path, file: Some(file), partial: Vec::new() }))
    }
}

fn stream_log(
    rt: &Runtime,
    id: &str,
    bundle: &Path,
    follow: bool,
    tail: Option<usize>,
    tx: mpsc::Sender<LogEntry>,
) {
    let mut reader = LogReader::new(log_path(bundle));
    let mut existing: VecDeque<LogEntry> = reader.read_new().into();
    if let Some(n) = tail {
        while existing.len() > n {
            existing.pop_front();
        }
    }
    for e in existing {
        if tx.blocking_send(e).is_err() {
            return;
        }
    }
    if !follow {
        return;
    }
    loop {
        if tx.is_closed() {
            return;
        }
        // The shim writes all output before the exit record: after seeing the run end,
        // one more read drains the log.
        let finished = !matches!(rt.state(id), RunState::Running { .. });
        for e in reader.read_new() {
            if tx.blocking_send(e).is_err() {
                return;
            }
        }
        if finished {
            return;
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Stream;
    use std::io::Write;

    #[test]
    fn reads_complete_lines_only() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("container.log");
        let mut f = File::create(&p).unwrap();
        f.write_all(b"{\"log\":\"a\\n\",\"stream\":\"stdout\",\"time\":\"t1\"}\n{\"log\":\"b")
            .unwrap();
        let mut r = LogReader::new(p);
        let got = r.read_new();
        assert_eq!(
            got,
            vec![LogEntry { stream: Stream::Stdout, line: b"a\n".to_vec(), time: "t1".into() }]
        );
        f.write_all(b"\\n\",\"stream\":\"stderr\",\"time\":\"t2\"}\nnot json\n").unwrap();
        let got = r.read_new();
        assert_eq!(
            got,
            vec![LogEntry { stream: Stream::Stderr, line: b"b\n".to_vec(), time: "t2".into() }]
        );
        assert!(r.read_new().is_empty());
    }

    #[tokio::test]
    async fn tail_and_no_follow() {
        let d = tempfile::tempdir().unwrap();
        let rt = Runtime::new(&d.path().join("data"), &d.path().join("run")).unwrap();
        let bundle = rt.bundle_dir("c1").unwrap();
        std::fs::create_dir_all(&bundle).unwrap();
        let mut f = File::create(log_path(&bundle)).unwrap();
        for i in 0..5 {
            writeln!(f, "{{\"log\":\"{i}\\n\",\"stream\":\"stdout\",\"time\":\"t\"}}").unwrap();
        }
        let mut rx = rt.logs("c1", false, Some(2)).unwrap();
        let mut got = Vec::new();
        while let Some(e) = rx.recv().await {
            got.push(String::from_utf8(e.line).unwrap());
        }
        assert_eq!(got, ["3\n", "4\n"]);
        // Follow on a container that is not running ends after the existing entries.
        let mut rx = rt.logs("c1", true, None).unwrap();
        let mut n = 0;
        while rx.recv().await.is_some() {
            n += 1;
        }
        assert_eq!(n, 5);
        assert_eq!(rt.logs("nope", false, None).unwrap_err().kind, cove_model::ErrorKind::NotFound);
    }
}
