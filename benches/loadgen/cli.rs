//! Command line: the options, their quick and full defaults, and their checks.

use std::net::SocketAddr;

#[derive(Clone, Debug)]
pub(crate) struct Opts {
    pub(crate) quick: bool,
    pub(crate) calls: usize,
    pub(crate) hold: f64,
    pub(crate) ramp: f64,
    pub(crate) rate: f64,
    pub(crate) rate_seconds: f64,
    pub(crate) rate_hold: f64,
    pub(crate) rings: u8,
    pub(crate) phase_a: bool,
    pub(crate) phase_b: bool,
    pub(crate) phase_c: bool,
    /// Phase C: registered agents.
    pub(crate) agents: usize,
    /// Phase C: bridged calls.
    pub(crate) bridge_calls: usize,
    /// Phase C: hold time once all calls are bridged.
    pub(crate) bridge_hold: f64,
    /// An already running SIP server to call instead of spawning the switch.
    pub(crate) target: Option<SocketAddr>,
}

const USAGE: &str = "loadgen [--quick] [--calls N] [--hold S] [--ramp CALLS_PER_S] [--rate R] \
[--rate-seconds S] [--rate-hold S] [--rings N] [--agents N] [--bridge-hold S] \
[--phase a|b|c|all] [--target ADDR]";

pub(crate) fn parse_opts() -> Result<Opts, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}\n");
        println!("  --quick            20 calls held 2 s; 20 calls/s for 2 s; 5 agents/5 bridged calls held 2 s (also the default without --bench)");
        println!("  --calls N          phase A concurrent calls (default 2000)");
        println!("  --hold S           phase A hold time once all are up (default 20)");
        println!("  --ramp R           phase A new calls per second while ramping (default 200)");
        println!("  --rate R           phase B new calls per second (default 300)");
        println!("  --rate-seconds S   phase B duration (default 10)");
        println!("  --rate-hold S      phase B talk time after answer (default 1)");
        println!("  --rings N          phase B answer_after_rings (default 1, as shipped)");
        println!("  --agents N         phase C registered agents (default 1000); --calls sets its calls too");
        println!("  --bridge-hold S    phase C hold time once all calls are bridged (default 20)");
        println!("  --phase a|b|c|all  which phase(s) to run (default all; `both` = a and b)");
        println!("  --target ADDR      call this SIP server instead of spawning ccswitch (no CPU/RSS figures)");
        println!("env: CCSWITCH_BIN (switch binary), RUST_LOG (passed to the switch)");
        std::process::exit(0);
    }
    let bench_mode = args.iter().any(|a| a == "--bench");
    let mut o = Opts {
        quick: !bench_mode,
        calls: 2000,
        hold: 20.0,
        ramp: 200.0,
        rate: 300.0,
        rate_seconds: 10.0,
        rate_hold: 1.0,
        rings: 1,
        phase_a: true,
        phase_b: true,
        phase_c: true,
        agents: 1000,
        bridge_calls: 1000,
        bridge_hold: 20.0,
        target: None,
    };
    let mut explicit = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = |name: &str| -> Result<String, String> {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
        };
        let num = |s: String, name: &str| -> Result<f64, String> {
            s.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| format!("{name}: not a number: {s}"))
        };
        match a.as_str() {
            "--quick" => o.quick = true,
            "--bench" => {}
            "--calls" => {
                o.calls = num(val(a)?, a)? as usize;
                explicit.push("calls");
            }
            "--hold" => {
                o.hold = num(val(a)?, a)?;
                explicit.push("hold");
            }
            "--ramp" => o.ramp = num(val(a)?, a)?.max(1.0),
            "--rate" => {
                o.rate = num(val(a)?, a)?;
                explicit.push("rate");
            }
            "--rate-seconds" => {
                o.rate_seconds = num(val(a)?, a)?;
                explicit.push("rate-seconds");
            }
            "--rate-hold" => o.rate_hold = num(val(a)?, a)?,
            "--target" => {
                let v = val(a)?;
                o.target = Some(
                    v.parse()
                        .map_err(|_| format!("--target: not ADDR:PORT: {v}"))?,
                );
            }
            "--agents" => {
                o.agents = num(val(a)?, a)? as usize;
                explicit.push("agents");
            }
            "--bridge-hold" => {
                o.bridge_hold = num(val(a)?, a)?;
                explicit.push("bridge-hold");
            }
            "--rings" => o.rings = num(val(a)?, a)?.min(10.0) as u8,
            "--phase" => match val(a)?.as_str() {
                "a" => (o.phase_a, o.phase_b, o.phase_c) = (true, false, false),
                "b" => (o.phase_a, o.phase_b, o.phase_c) = (false, true, false),
                "c" => (o.phase_a, o.phase_b, o.phase_c) = (false, false, true),
                "both" => (o.phase_a, o.phase_b, o.phase_c) = (true, true, false),
                "all" => (o.phase_a, o.phase_b, o.phase_c) = (true, true, true),
                other => return Err(format!("--phase: a, b, c or all, not {other}")),
            },
            // cargo test passes its own flags and filters to every target: ignore them.
            other => eprintln!("loadgen: ignoring argument {other:?}"),
        }
    }
    // Phase C takes as many calls as --calls says, else one per agent.
    o.bridge_calls = if explicit.contains(&"calls") {
        o.calls
    } else {
        o.agents
    };
    if o.quick {
        if !explicit.contains(&"agents") {
            o.agents = 5;
        }
        if !explicit.contains(&"calls") {
            o.bridge_calls = o.agents;
        }
        if !explicit.contains(&"bridge-hold") {
            o.bridge_hold = 2.0;
        }
        if !explicit.contains(&"calls") {
            o.calls = 20;
        }
        if !explicit.contains(&"hold") {
            o.hold = 2.0;
        }
        if !explicit.contains(&"rate") {
            o.rate = 20.0;
        }
        if !explicit.contains(&"rate-seconds") {
            o.rate_seconds = 2.0;
        }
    }
    Ok(o)
}
