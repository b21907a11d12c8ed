//! `wallboard.toml` -> `Wallboard`: the targets the live view colours figures against and
//! the alert thresholds. Optional: without the file, the standards of METRICS.md apply.
//! The format is documented in the shipped `config/wallboard.toml`.

use super::toml_error::{self, ConfigError};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The wallboard file inside the config folder; optional.
pub const WALLBOARD_FILE: &str = "wallboard.toml";

/// Targets (METRICS.md standards by default). Queues keep their own service-level
/// threshold and percentage from queues.toml; these are the call centre's overall targets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Targets {
    pub service_level_pct: f64,
    pub service_level_secs: u64,
    pub frt_secs: u64,
    pub aht_secs: u64,
    pub abandon_pct: f64,
    pub containment_pct: f64,
    pub three_ring_pct: f64,
    pub csat_pct: f64,
    pub response_rate_pct: f64,
    pub asa_secs: u64,
}

impl Default for Targets {
    fn default() -> Self {
        Targets {
            service_level_pct: 80.0,
            service_level_secs: 20,
            frt_secs: 20,
            aht_secs: 300,
            abandon_pct: 5.0,
            containment_pct: 60.0,
            three_ring_pct: 100.0,
            csat_pct: 90.0,
            response_rate_pct: 80.0,
            asa_secs: 20,
        }
    }
}

/// When alerts are raised.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Alerts {
    /// An agent not ready (break, missed call, ...) longer than this.
    pub not_ready_max_secs: u64,
    /// `service_level_low` only once a queue has this many calls today (one early miss
    /// would otherwise read as 0 %).
    pub service_level_min_calls: u64,
}

impl Default for Alerts {
    fn default() -> Self {
        Alerts {
            not_ready_max_secs: 900,
            service_level_min_calls: 5,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Wallboard {
    #[serde(default)]
    pub targets: Targets,
    #[serde(default)]
    pub alerts: Alerts,
}

pub fn load(dir: &Path) -> Result<Wallboard, ConfigError> {
    let path = dir.join(WALLBOARD_FILE);
    if !path.exists() {
        return Ok(Wallboard::default());
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|e| ConfigError::new(&path, "", format!("cannot read the file: {e}")))?;
    parse(&path, &text)
}

pub fn parse(path: &Path, text: &str) -> Result<Wallboard, ConfigError> {
    let w: Wallboard = toml_error::parse(path, text)?;
    let err = |key: &str, reason: &str| Err(ConfigError::new(path, key, reason));
    let t = &w.targets;
    for (key, v) in [
        ("targets.service_level_pct", t.service_level_pct),
        ("targets.abandon_pct", t.abandon_pct),
        ("targets.containment_pct", t.containment_pct),
        ("targets.three_ring_pct", t.three_ring_pct),
        ("targets.csat_pct", t.csat_pct),
        ("targets.response_rate_pct", t.response_rate_pct),
    ] {
        if !(0.0..=100.0).contains(&v) {
            return err(key, "must be a percentage between 0 and 100");
        }
    }
    for (key, v) in [
        ("targets.service_level_secs", t.service_level_secs),
        ("targets.frt_secs", t.frt_secs),
        ("targets.asa_secs", t.asa_secs),
    ] {
        if !(1..=3600).contains(&v) {
            return err(key, "must be between 1 and 3600 seconds");
        }
    }
    if !(1..=86_400).contains(&t.aht_secs) {
        return err("targets.aht_secs", "must be between 1 and 86400 seconds");
    }
    if !(60..=86_400).contains(&w.alerts.not_ready_max_secs) {
        return err(
            "alerts.not_ready_max_secs",
            "must be between 60 and 86400 seconds",
        );
    }
    if w.alerts.service_level_min_calls > 100_000 {
        return err("alerts.service_level_min_calls", "must be at most 100000");
    }
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_the_metrics_md_standards() {
        let w = parse(Path::new("wallboard.toml"), "").unwrap();
        assert_eq!(w, Wallboard::default());
        assert_eq!(w.targets.service_level_pct, 80.0);
        assert_eq!(w.alerts.not_ready_max_secs, 900);
    }

    #[test]
    fn out_of_range_values_name_the_key() {
        let e = parse(Path::new("w.toml"), "[targets]\ncsat_pct = 120\n").unwrap_err();
        assert_eq!(e.key, "targets.csat_pct");
        let e = parse(Path::new("w.toml"), "[alerts]\nnot_ready_max_secs = 5\n").unwrap_err();
        assert_eq!(e.key, "alerts.not_ready_max_secs");
        let e = parse(Path::new("w.toml"), "[targets]\nbogus = 1\n").unwrap_err();
        assert!(e.reason.contains("unknown field"), "{e}");
    }
}
