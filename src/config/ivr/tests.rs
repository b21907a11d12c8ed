use super::*;

fn langs() -> Vec<String> {
    vec!["en".into(), "zh".into()]
}

fn parse_str(text: &str) -> Result<IvrGraph, ConfigError> {
    parse(
        Path::new("ivr.toml"),
        text,
        Path::new("/nonexistent"),
        &langs(),
    )
}

const SMALL: &str = r#"
time_zone = "UTC"
[entries]
default = "main"
[nodes.main]
kind = "menu"
prompt = "main_menu"
options = { 1 = "hours" }
fallback = "bye"
[nodes.hours]
kind = "play"
prompt = ["hours"]
next = "bye"
resolves = true
[nodes.bye]
kind = "hangup"
prompt = "goodbye"
"#;

#[test]
fn small_graph_parses() {
    let g = parse_str(SMALL).unwrap();
    assert_eq!(g.entry_for("x"), "main");
    assert!(g.prompt_ids().contains("main_menu"));
}

#[test]
fn field_of_another_kind_is_named() {
    let text = SMALL.replace("resolves = true", "resolves = true\nfallback = \"bye\"");
    let e = parse_str(&text).unwrap_err();
    assert_eq!(e.key, "nodes.hours.fallback");
    assert!(e.reason.contains("not used by a `play` node"), "{e}");
}

#[test]
fn unknown_field_is_named() {
    let text = SMALL.replace("resolves = true", "resolvs = true");
    let e = parse_str(&text).unwrap_err();
    assert_eq!(e.key, "nodes.hours.resolvs");
}

#[test]
fn bad_option_digit_is_named() {
    let text = SMALL.replace("options = { 1 = \"hours\" }", "options = { x = \"hours\" }");
    let e = parse_str(&text).unwrap_err();
    assert_eq!(e.key, "nodes.main.options.x");
}

#[test]
fn missing_prompt_is_refused() {
    let text = SMALL.replace("prompt = \"main_menu\"\n", "");
    let e = parse_str(&text).unwrap_err();
    assert_eq!(e.key, "nodes.main.prompt");
    assert!(e.reason.contains("missing"), "{e}");
}

#[test]
fn bad_prompt_id_is_refused() {
    let text = SMALL.replace("prompt = \"goodbye\"", "prompt = \"../x\"");
    let e = parse_str(&text).unwrap_err();
    assert_eq!(e.key, "nodes.bye.prompt");
}

#[test]
fn prompt_of_the_wrong_type_is_explained() {
    let e = parse_str(&SMALL.replace("prompt = \"main_menu\"", "prompt = 5")).unwrap_err();
    assert_eq!(e.key, "nodes.main.prompt");
    assert!(e.reason.contains("a prompt id or a list"), "{e}");
    let e = parse_str(&SMALL.replace("prompt = \"main_menu\"", "prompt = []")).unwrap_err();
    assert_eq!(e.key, "nodes.main.prompt");
}

#[test]
fn unknown_language_is_refused() {
    let text = SMALL.replace(
            "[nodes.bye]",
            "[nodes.lang]\nkind = \"language\"\nprompt = \"language_menu\"\noptions = { 1 = \"fr\" }\nnext = \"main\"\n[nodes.bye]",
        );
    let e = parse_str(&text).unwrap_err();
    assert_eq!(e.key, "nodes.lang.options.1");
}

#[test]
fn holidays_accept_strings_and_toml_dates() {
    let text = SMALL.replace(
        "[entries]",
        "holidays = [{ date = \"2026-10-01\" }, { date = 2026-10-02, name = \"x\" }]\n[entries]",
    );
    let g = parse_str(&text).unwrap();
    assert!(g.is_holiday(NaiveDate::from_ymd_opt(2026, 10, 2).unwrap()));
    let bad = SMALL.replace(
        "[entries]",
        "holidays = [{ date = \"2026-13-01\" }]\n[entries]",
    );
    assert_eq!(parse_str(&bad).unwrap_err().key, "holidays[0].date");
}

#[test]
fn bad_time_zone_is_named() {
    let e = parse_str(&SMALL.replace("\"UTC\"", "\"Mars/Olympus\"")).unwrap_err();
    assert_eq!(e.key, "time_zone");
}

proptest::proptest! {
    /// Any edit of a valid file is either accepted or refused with a key; never a panic.
    #[test]
    fn mangled_files_never_panic(at in 0usize..400, cut in 0usize..20, insert in "[ -~\n]{0,8}") {
        let mut text = SMALL.to_string();
        let at = at.min(text.len());
        let end = (at + cut).min(text.len());
        text.replace_range(at..end, &insert);
        if let Err(e) = parse_str(&text) {
            proptest::prop_assert!(!e.reason.is_empty());
        }
    }
}

#[test]
fn day_ranges() {
    assert_eq!(parse_day("09:00-18:00"), Ok(vec![(540, 1080)]));
    assert_eq!(
        parse_day("09:00-12:00, 13:00-24:00"),
        Ok(vec![(540, 720), (780, 1440)])
    );
    assert_eq!(parse_day("closed"), Ok(vec![]));
    assert!(parse_day("18:00-09:00").is_err());
    assert!(parse_day("9:00-18:00").is_err());
    assert!(parse_day("09:60-18:00").is_err());
}

#[test]
fn table_rows() {
    let st = BTreeMap::from([("shipped".to_string(), "p".to_string())]);
    let t = parse_table("order_number,status\n\n123, shipped\r\n", &st, true).unwrap();
    assert_eq!(t.get("123").map(String::as_str), Some("shipped"));
    assert_eq!(
        parse_table("h,s\n123,lost\n", &st, true).unwrap_err().0,
        "line 2"
    );
    assert_eq!(
        parse_table("h,s\n12a,shipped\n", &st, true).unwrap_err().0,
        "line 2"
    );
    assert_eq!(
        parse_table("h,s\n1,shipped\n1,shipped\n", &st, true)
            .unwrap_err()
            .0,
        "line 3"
    );
    assert!(parse_table("h,s\n", &st, true).is_err());
    assert!(parse_table("h,s\n1,shipped,x\n", &st, true).is_err());
}
