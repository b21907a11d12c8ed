//! Erlang C staffing: how many agents a queue needs so that `target` of its calls are
//! answered within `threshold`, given an arrival rate and an average handle time.
//!
//! Traffic A = arrivals per second * AHT seconds (Erlangs). With N > A agents the
//! probability that a call waits is Erlang C, computed from the Erlang B recurrence
//! B(0) = 1, B(n) = A B(n-1) / (n + A B(n-1)), C = N B / (N - A (1 - B)), which stays
//! finite where A^N / N! would overflow. Service level = 1 - C e^{-(N - A) T / AHT}.

/// Erlang C: probability that a call has to wait, with `agents` serving `traffic` Erlangs.
/// 1.0 when the agents cannot keep up (N <= A).
pub fn erlang_c(traffic: f64, agents: u32) -> f64 {
    let n = f64::from(agents);
    if traffic <= 0.0 {
        return 0.0;
    }
    if n <= traffic {
        return 1.0;
    }
    let mut b = 1.0;
    for k in 1..=agents {
        b = traffic * b / (f64::from(k) + traffic * b);
    }
    n * b / (n - traffic * (1.0 - b))
}

/// Fraction of calls answered within `threshold_secs`, 0..=1.
pub fn service_level(traffic: f64, agents: u32, aht_secs: f64, threshold_secs: f64) -> f64 {
    if traffic <= 0.0 {
        return 1.0;
    }
    let n = f64::from(agents);
    if n <= traffic || aht_secs <= 0.0 {
        return 0.0;
    }
    1.0 - erlang_c(traffic, agents) * (-(n - traffic) * threshold_secs / aht_secs).exp()
}

/// The fewest agents reaching `target` (0..=1) service level for `arrivals_per_hour` calls
/// of `aht_secs` average handle time; 0 with no traffic. Capped at 10 000 agents.
pub fn agents_needed(
    arrivals_per_hour: f64,
    aht_secs: f64,
    threshold_secs: f64,
    target: f64,
) -> u32 {
    let traffic = arrivals_per_hour / 3600.0 * aht_secs;
    if traffic.is_nan() || traffic <= 0.0 || !aht_secs.is_finite() {
        return 0;
    }
    let mut n = traffic.floor() as u32 + 1;
    while n < 10_000 && service_level(traffic, n, aht_secs, threshold_secs) < target {
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The textbook formula with factorials, for small N: an independent check.
    fn erlang_c_direct(a: f64, n: u32) -> f64 {
        let fact = |k: u32| (1..=k).map(f64::from).product::<f64>();
        let top = a.powi(n as i32) / fact(n) * f64::from(n) / (f64::from(n) - a);
        let sum: f64 = (0..n).map(|k| a.powi(k as i32) / fact(k)).sum();
        top / (sum + top)
    }

    #[test]
    fn two_erlangs_on_three_agents_wait_four_ninths_of_the_time() {
        assert!((erlang_c(2.0, 3) - 4.0 / 9.0).abs() < 1e-12);
    }

    #[test]
    fn recurrence_matches_the_factorial_formula() {
        for (a, n) in [(5.0, 6), (5.0, 8), (48.0, 54), (12.5, 15), (0.5, 1)] {
            let d = erlang_c_direct(a, n);
            assert!((erlang_c(a, n) - d).abs() < 1e-9, "A={a} N={n}");
        }
    }

    #[test]
    fn hundred_calls_an_hour_of_three_minutes_need_eight_agents_for_80_in_20() {
        // A = 5 Erlangs: 7 agents give 74.0 %, 8 give 88.0 % (direct formula).
        let sl7 = 1.0 - erlang_c_direct(5.0, 7) * (-(2.0) * 20.0 / 180.0f64).exp();
        assert!((service_level(5.0, 7, 180.0, 20.0) - sl7).abs() < 1e-9);
        assert!((sl7 - 0.7404).abs() < 1e-4);
        assert_eq!(agents_needed(100.0, 180.0, 20.0, 0.8), 8);
    }

    #[test]
    fn forty_eight_erlangs_need_fifty_four_agents() {
        // 720 calls an hour, AHT 240 s: 53 agents give 75.2 %, 54 give 81.7 %.
        assert_eq!(agents_needed(720.0, 240.0, 20.0, 0.8), 54);
        assert!((service_level(48.0, 54, 240.0, 20.0) - 0.8172).abs() < 1e-4);
    }

    #[test]
    fn no_traffic_needs_nobody_and_overload_never_meets_the_target() {
        assert_eq!(agents_needed(0.0, 180.0, 20.0, 0.8), 0);
        assert_eq!(service_level(5.0, 5, 180.0, 20.0), 0.0);
        assert_eq!(erlang_c(5.0, 4), 1.0);
    }
}
