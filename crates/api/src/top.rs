//! `GET /containers/{id}/top?ps_args=`: as dockerd does it, the host's `ps` with the
//! client's arguments (default `-ef`), keeping the rows of the container's processes (every
//! process in the PID namespace of its init).

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;

use axum::extract::State;
use axum::http::StatusCode;
use cove_model::Status;
use serde_json::json;

use crate::json::{ok, Id, Params};
use crate::{ApiError, ApiResult, AppState};

/// The pids in the same PID namespace as `init` (itself included).
fn pids_in_namespace_of(init: u32) -> Vec<u32> {
    let ns = |pid: &str| std::fs::metadata(format!("/proc/{pid}/ns/pid")).ok().map(|m| m.ino());
    let Some(want) = ns(&init.to_string()) else { return vec![] };
    let Ok(dir) = std::fs::read_dir("/proc") else { return vec![] };
    let mut pids: Vec<u32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| ns(&p.to_string()) == Some(want))
        .collect();
    pids.sort_unstable();
    pids
}

/// Docker's `parsePSOutput`: the titles, and the rows whose `PID` column is one of `pids`
/// (the last column keeps its spaces).
pub(crate) fn parse_ps(output: &str, pids: &[u32]) -> Result<serde_json::Value, ApiError> {
    let mut lines = output.lines();
    let titles: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    let pid_col = titles.iter().position(|t| *t == "PID").ok_or_else(|| {
        ApiError::bad_request(
            "Couldn't find PID field in ps output (use ps_args with a PID column)",
        )
    })?;
    let want: HashSet<u32> = pids.iter().copied().collect();
    let mut processes = vec![];
    for line in lines {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(pid) = fields.get(pid_col).and_then(|p| p.parse::<u32>().ok()) else { continue };
        if !want.contains(&pid) || titles.is_empty() {
            continue;
        }
        let n = titles.len();
        let mut row: Vec<String> = fields.iter().take(n - 1).map(|s| s.to_string()).collect();
        row.push(fields.get(n - 1..).map(|rest| rest.join(" ")).unwrap_or_default());
        processes.push(row);
    }
    Ok(json!({ "Titles": titles, "Processes": processes }))
}

/// `GET /containers/{id}/top`.
pub(crate) async fn top(State(st): State<AppState>, Id(id): Id, q: Params) -> ApiResult {
    let v = st.ctl.container_get(&id).await?;
    let r = &v.record;
    if r.state.status != Status::Running || r.state.pid == 0 {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("container {} is not running", r.id),
        ));
    }
    let args: Vec<String> = match q.get("ps_args").map(str::trim) {
        None | Some("") => vec!["-ef".into()],
        Some(a) => a.split_whitespace().map(str::to_owned).collect(),
    };
    let init = r.state.pid;
    let out = tokio::task::spawn_blocking(move || {
        let pids = pids_in_namespace_of(init);
        std::process::Command::new("ps").args(&args).output().map(|o| (o, pids))
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("ps: {e}")))?;
    let (out, pids) = out.map_err(|e| {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("error running ps: {e}"))
    })?;
    if !out.status.success() {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("ps: {}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()),
        ));
    }
    Ok(ok(&parse_ps(&String::from_utf8_lossy(&out.stdout), &pids)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ps_output_like_dockerd() {
        let out = "UID          PID    PPID  C STIME TTY          TIME CMD\n\
                   root           1       0  0 10:00 ?        00:00:01 /sbin/init\n\
                   root        4242       1  0 10:01 ?        00:00:00 sh -c sleep 100\n\
                   root        4243    4242  0 10:01 ?        00:00:00 sleep 100\n";
        let v = parse_ps(out, &[4242, 4243]).unwrap();
        assert_eq!(v["Titles"][1], "PID");
        assert_eq!(v["Titles"].as_array().unwrap().len(), 8);
        let p = v["Processes"].as_array().unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0][7], "sh -c sleep 100");
        assert_eq!(p[1][1], "4243");
        let e = parse_ps("USER COMMAND\nroot x\n", &[1]).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(parse_ps("", &[1]).is_err());
    }

    #[test]
    fn finds_its_own_namespace() {
        let me = std::process::id();
        assert!(pids_in_namespace_of(me).contains(&me));
        assert!(pids_in_namespace_of(u32::MAX).is_empty());
    }
}
