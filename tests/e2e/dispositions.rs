//! Dispositions end to end (issue 10): a pjsua2 agent takes a queued call, hangs up, and in
//! wrap-up dials `*42` (follow-up needed) from the same softphone; the switch answers it with
//! a confirmation and hangs up, `ccswitch report calls` shows the call's disposition, and
//! `ccswitch tasks list` the follow-up task it opened for the agent.

use super::*;

/// RTP slot of this module.
const SLOT: u16 = 25;

/// `ccswitch <args> --config .. --database .. --format json`, parsed.
fn ccswitch_json(cfg: &TestConfig, args: &[&str]) -> Value {
    let out = Command::new(bin())
        .args(args)
        .arg("--config")
        .arg(&cfg.dir)
        .args(["--database", &cfg.db_url, "--format", "json"])
        .output()
        .expect("run ccswitch");
    assert!(
        out.status.success(),
        "ccswitch {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "ccswitch {args:?} JSON: {e}\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[test]
fn pjsua_agent_sets_a_disposition_by_feature_code_in_wrap_up() {
    let Some(py) = pjsua_python() else { return };
    let cfg = TestConfig::new(0);
    let mut sw = Switch::start(&cfg, SLOT);
    let t = timeline();
    let talk = 3.0;
    // The agent hangs up after `talk` s; the caller would stay much longer.
    let caller_hangup = t.main + 40.0;
    let agent = spawn_agent(
        &py,
        &sw,
        "1001",
        0.5,
        None,
        None,
        caller_hangup + 20.0,
        &[
            "--hangup-after",
            &talk.to_string(),
            "--calls",
            "1",
            "--dial",
            "*42",
            "--dial-after-calls",
            "--log-file",
            &cfg.path("agent_sip.log").to_string_lossy(),
        ],
    );
    agent.wait_event("registered", Duration::from_secs(15));
    let call = spawn_caller(
        &py,
        &sw.uri("100"),
        &CallerArgs {
            transport: "udp",
            dtmf: format!("1@{:.2}s,6@{:.2}s", t.language, t.main),
            dtmf_method: "rfc4733",
            hangup_after: caller_hangup,
            max_duration: caller_hangup + 20.0,
            from_user: Some("13812345678"),
            ..CallerArgs::default()
        },
    );
    let done = agent.wait_event("done", Duration::from_secs(caller_hangup as u64 + 40));
    eprintln!("agent: {done}");
    let summary = call.finish();
    eprintln!("caller: {summary}");
    assert_eq!(summary["confirmed"], true, "{summary}");
    let calls = done["calls"].as_array().cloned().unwrap_or_default();
    assert_eq!(calls.len(), 1, "the agent took the call: {done}");
    assert_eq!(calls[0]["confirmed"], true, "{done}");
    assert_eq!(calls[0]["x_queue"], "tech", "{done}");
    assert_eq!(calls[0]["disconnected_by"], "local", "{done}");
    // *42: answered (after the 407 round), confirmed, hung up by the switch.
    assert_eq!(done["dialled"]["confirmed"], true, "{done}");
    assert_eq!(done["dialled"]["disconnected"], true, "{done}");
    let st = sw.terminate(Duration::from_secs(30));
    assert!(st.success(), "ccswitch exit status {st}");

    // The customer's call (not the agent's *42 call) carries the disposition.
    let rows = cfg.calls();
    eprintln!("calls: {rows:#?}");
    let customer = rows
        .iter()
        .find(|c| c["queue"] == "tech")
        .expect("the queued call");
    let d = &customer["disposition"];
    assert_eq!(d["name"], "follow_up", "{customer:#}");
    assert_eq!(d["code"], 2, "{customer:#}");
    assert_eq!(d["resolved"], false, "{customer:#}");
    assert_eq!(d["agent"], "1001", "{customer:#}");
    let feature_call = rows
        .iter()
        .find(|c| c["dialled"] == "*42")
        .expect("the *42 call");
    assert_eq!(
        feature_call["end_reason"], "feature_code",
        "{feature_call:#}"
    );
    assert!(feature_call["disposition"].is_null(), "{feature_call:#}");

    // The follow-up task for the agent, due 24 h after the disposition.
    let tasks = ccswitch_json(&cfg, &["tasks", "list"]);
    eprintln!("tasks: {tasks:#}");
    let list = tasks["tasks"].as_array().cloned().unwrap_or_default();
    let task = list
        .iter()
        .find(|t| t["call_id"] == customer["call_id"])
        .expect("a task for the call");
    assert_eq!(task["reason"], "disposition:follow_up", "{task}");
    assert_eq!(task["agent"], "1001", "{task}");
    let opened = task["opened_at_ms"].as_u64().unwrap_or(0);
    let due = task["due_at_ms"].as_u64().unwrap_or(0);
    assert_eq!(due.saturating_sub(opened), 86_400_000, "{task}");
    assert_eq!(d["at_ms"].as_u64(), Some(opened), "{customer:#}");

    // The queue report counts it.
    let queues = ccswitch_json(&cfg, &["report", "queues"]);
    let tech = queues["queues"]
        .as_array()
        .and_then(|q| q.iter().find(|r| r["queue"] == "tech").cloned())
        .expect("a tech row");
    assert_eq!(tech["dispositioned"], 1, "{tech}");
    assert_eq!(tech["dispositions"]["follow_up"], 1, "{tech}");
    assert_eq!(tech["fcr_disposition"], 0.0, "{tech}");
}
