//! SMS replies to a survey: a score (with the rest of the text as a comment), an opt-out,
//! or unreadable (the whole text kept as a comment). Never panics, on any input.
//!
//! - Scores: ASCII or full-width digits (`5`, `５`, `10`), or one Chinese numeral
//!   零 一 二 三 四 五 六 七 八 九 十 (十 = 10). CSAT takes 1-5, NPS 0-10.
//! - Around the score: spaces and punctuation (ASCII, full-width, CJK) are ignored; a unit
//!   `分` (points) or `星` (stars) may follow it; what follows is the comment
//!   (`5分 很好` -> 5, "很好").
//! - A Chinese numeral directly followed by another ideograph is a word, not a score:
//!   `一般` ("so-so") must not read as 1, `十分满意` ("very satisfied") must not read as 10.
//! - A decimal (`3.5`), a number of three or more digits, or text before the number:
//!   unreadable.
//! - Opt-out: the text starts with TD, STOP, UNSUBSCRIBE (any case, full-width too, as a
//!   whole word) or 退订 (`TD`, `td`, `ＴＤ`, `Stop please`, `退订谢谢`).

/// Longest comment kept, in characters (cut on a character boundary).
pub const MAX_COMMENT_CHARS: usize = 500;

/// Which question the reply answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    /// Satisfaction, 1 (very dissatisfied) to 5 (very satisfied).
    Csat,
    /// Net Promoter Score, 0 to 10.
    Nps,
}

impl Scale {
    pub fn range(self) -> std::ops::RangeInclusive<u8> {
        match self {
            Scale::Csat => 1..=5,
            Scale::Nps => 0..=10,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Score {
        score: u8,
        comment: Option<String>,
    },
    OptOut,
    /// No score in range; the text (capped) is kept as a comment, None when blank.
    Unreadable {
        comment: Option<String>,
    },
}

const OPT_OUT_WORDS: [&str; 3] = ["TD", "STOP", "UNSUBSCRIBE"];

/// Reads `text` as an answer on `scale`.
pub fn parse_reply(text: &str, scale: Scale) -> Reply {
    let body = text.trim_matches(is_separator);
    if is_opt_out(body) {
        return Reply::OptOut;
    }
    let unreadable = || Reply::Unreadable {
        comment: comment(body),
    };
    let Some((score, rest)) = leading_score(body) else {
        return unreadable();
    };
    if !scale.range().contains(&score) {
        return unreadable();
    }
    Reply::Score {
        score,
        comment: comment(rest),
    }
}

/// The score at the start of `body` and the text after it (unit and separators dropped).
fn leading_score(body: &str) -> Option<(u8, &str)> {
    let mut chars = body.char_indices().peekable();
    let (_, first) = *chars.peek()?;
    let (score, end) = if let Some(n) = chinese_numeral(first) {
        let end = first.len_utf8();
        (n, end)
    } else {
        let mut value: u32 = 0;
        let mut end = 0;
        let mut count = 0;
        while let Some(&(i, c)) = chars.peek() {
            let Some(d) = digit(c) else { break };
            value = value * 10 + d;
            count += 1;
            end = i + c.len_utf8();
            chars.next();
            if count > 2 {
                return None;
            }
        }
        if count == 0 {
            return None;
        }
        (u8::try_from(value).ok()?, end)
    };
    let after = &body[end..];
    // 十分 + word is the adverb "very" (十分满意: very satisfied), not ten points.
    if first == '十' && after.starts_with('分') {
        if let Some(c) = after['分'.len_utf8()..].chars().next() {
            if is_ideograph(c) {
                return None;
            }
        }
    }
    let mut rest_chars = after.chars();
    match rest_chars.next() {
        None => Some((score, "")),
        Some('分' | '星') => Some((score, rest_chars.as_str())),
        // `3.5`, `4,5`: a decimal, not a score and a comment.
        Some('.' | ',' | '．' | '，') if rest_chars.next().and_then(digit).is_some() => None,
        Some(c) if digit(c).is_some() || chinese_numeral(c).is_some() => None,
        Some(c) if chinese_numeral(first).is_some() && is_ideograph(c) => None,
        Some(_) => Some((score, after)),
    }
}

fn digit(c: char) -> Option<u32> {
    match c {
        '0'..='9' => Some(c as u32 - '0' as u32),
        '０'..='９' => Some(c as u32 - '０' as u32),
        _ => None,
    }
}

fn chinese_numeral(c: char) -> Option<u8> {
    Some(match c {
        '零' | '〇' => 0,
        '一' => 1,
        '二' | '两' => 2,
        '三' => 3,
        '四' => 4,
        '五' => 5,
        '六' => 6,
        '七' => 7,
        '八' => 8,
        '九' => 9,
        '十' => 10,
        _ => return None,
    })
}

fn is_ideograph(c: char) -> bool {
    matches!(c, '\u{3400}'..='\u{4DBF}' | '\u{4E00}'..='\u{9FFF}' | '\u{F900}'..='\u{FAFF}')
}

/// Whitespace and punctuation: ASCII, general punctuation, CJK symbols, full-width forms.
fn is_separator(c: char) -> bool {
    c.is_whitespace()
        || c.is_ascii_punctuation()
        || matches!(c,
            '\u{2000}'..='\u{206F}'   // general punctuation (dashes, quotes, …)
            // CJK symbols and punctuation (、。「」【】) except 〇, the numeral zero
            | '\u{3000}'..='\u{3006}'
            | '\u{3008}'..='\u{303F}'
            | '\u{FF01}'..='\u{FF0F}' // full-width ！＂＃…／
            | '\u{FF1A}'..='\u{FF20}' // ：；＜＝＞？＠
            | '\u{FF3B}'..='\u{FF40}'
            | '\u{FF5B}'..='\u{FF65}'
            | '\u{FE10}'..='\u{FE1F}' // vertical forms
            | '\u{FE30}'..='\u{FE6F}' // CJK compatibility forms, small forms
        )
}

/// Full-width ASCII (U+FF01..U+FF5E) as ASCII, upper-cased; other characters unchanged.
fn fold(c: char) -> char {
    let c = match c {
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        _ => c,
    };
    c.to_ascii_uppercase()
}

fn is_opt_out(body: &str) -> bool {
    if body.starts_with("退订") {
        return true;
    }
    OPT_OUT_WORDS.iter().any(|word| {
        let mut chars = body.chars().map(fold);
        word.chars().all(|w| chars.next() == Some(w))
            && chars.next().is_none_or(|c| !c.is_alphanumeric())
    })
}

/// `text` without surrounding separators, capped at MAX_COMMENT_CHARS; None when blank.
fn comment(text: &str) -> Option<String> {
    let text = text.trim_matches(is_separator);
    if text.is_empty() {
        return None;
    }
    let end = text
        .char_indices()
        .nth(MAX_COMMENT_CHARS)
        .map_or(text.len(), |(i, _)| i);
    Some(text[..end].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn score(score: u8, comment: Option<&str>) -> Reply {
        Reply::Score {
            score,
            comment: comment.map(str::to_string),
        }
    }

    fn unreadable(comment: Option<&str>) -> Reply {
        Reply::Unreadable {
            comment: comment.map(str::to_string),
        }
    }

    #[test]
    fn csat_scores() {
        let cases: &[(&str, Reply)] = &[
            ("5", score(5, None)),
            ("1", score(1, None)),
            ("５", score(5, None)),
            ("五", score(5, None)),
            ("一", score(1, None)),
            (" 3. ", score(3, None)),
            ("3.", score(3, None)),
            ("【4】", score(4, None)),
            ("「５」。", score(5, None)),
            ("5分", score(5, None)),
            ("5星", score(5, None)),
            ("五分", score(5, None)),
            ("5分 很好", score(5, Some("很好"))),
            ("五分，很好！", score(5, Some("很好"))),
            ("5 很好", score(5, Some("很好"))),
            ("5很好", score(5, Some("很好"))),
            ("4 the wait was long", score(4, Some("the wait was long"))),
            ("4, the wait was long.", score(4, Some("the wait was long"))),
            ("2 - rude", score(2, Some("rude"))),
            ("\u{3000}４\u{3000}太慢了", score(4, Some("太慢了"))),
            ("5\n", score(5, None)),
            ("5 5 5", score(5, Some("5 5"))),
        ];
        for (text, want) in cases {
            assert_eq!(&parse_reply(text, Scale::Csat), want, "{text:?}");
        }
    }

    #[test]
    fn csat_unreadable_keeps_the_text() {
        let cases: &[(&str, Reply)] = &[
            ("", unreadable(None)),
            ("  ...  ", unreadable(None)),
            ("0", unreadable(Some("0"))),
            ("6", unreadable(Some("6"))),
            ("10", unreadable(Some("10"))),
            ("十", unreadable(Some("十"))),
            ("零", unreadable(Some("零"))),
            ("100", unreadable(Some("100"))),
            ("13812345678", unreadable(Some("13812345678"))),
            ("3.5", unreadable(Some("3.5"))),
            ("4,5", unreadable(Some("4,5"))),
            ("一般", unreadable(Some("一般"))),
            ("十分满意", unreadable(Some("十分满意"))),
            ("五五", unreadable(Some("五五"))),
            ("very good 5", unreadable(Some("very good 5"))),
            ("thanks!", unreadable(Some("thanks"))),
            ("-5", score(5, None)),
        ];
        for (text, want) in cases {
            assert_eq!(&parse_reply(text, Scale::Csat), want, "{text:?}");
        }
    }

    #[test]
    fn nps_scores() {
        let cases: &[(&str, Reply)] = &[
            ("0", score(0, None)),
            ("零", score(0, None)),
            ("〇", score(0, None)),
            ("10", score(10, None)),
            ("１０", score(10, None)),
            ("十", score(10, None)),
            ("十分", score(10, None)),
            ("9 great", score(9, Some("great"))),
            ("七", score(7, None)),
            ("两", score(2, None)),
            ("11", unreadable(Some("11"))),
            ("十分满意", unreadable(Some("十分满意"))),
        ];
        for (text, want) in cases {
            assert_eq!(&parse_reply(text, Scale::Nps), want, "{text:?}");
        }
    }

    #[test]
    fn opt_out_words() {
        for text in [
            "TD",
            "td",
            "Td",
            "ＴＤ",
            "ｔｄ",
            " TD ",
            "TD.",
            "退订",
            " 退订。",
            "退订谢谢",
            "STOP",
            "stop",
            "Stop please",
            "ＳＴＯＰ",
            "UNSUBSCRIBE",
            "unsubscribe",
            "Unsubscribe!",
        ] {
            for scale in [Scale::Csat, Scale::Nps] {
                assert_eq!(parse_reply(text, scale), Reply::OptOut, "{text:?}");
            }
        }
        for text in ["TDX", "STOPPED", "stopwatch", "5 stop", "退"] {
            assert_ne!(parse_reply(text, Scale::Csat), Reply::OptOut, "{text:?}");
        }
    }

    #[test]
    fn comments_are_capped_on_a_char_boundary() {
        let long = format!("4 {}", "很".repeat(MAX_COMMENT_CHARS + 50));
        let Reply::Score { score, comment } = parse_reply(&long, Scale::Csat) else {
            panic!("a score");
        };
        assert_eq!(score, 4);
        assert_eq!(comment.unwrap().chars().count(), MAX_COMMENT_CHARS);
        let Reply::Unreadable { comment } = parse_reply(&"é".repeat(900), Scale::Csat) else {
            panic!("unreadable");
        };
        assert_eq!(comment.unwrap().chars().count(), MAX_COMMENT_CHARS);
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(s in "\\PC{0,80}") {
            for scale in [Scale::Csat, Scale::Nps] {
                match parse_reply(&s, scale) {
                    Reply::Score { score, comment } => {
                        prop_assert!(scale.range().contains(&score));
                        prop_assert!(comment.is_none_or(|c| c.chars().count() <= MAX_COMMENT_CHARS));
                    }
                    Reply::Unreadable { comment } => {
                        prop_assert!(comment.is_none_or(|c| c.chars().count() <= MAX_COMMENT_CHARS));
                    }
                    Reply::OptOut => {}
                }
            }
        }

        #[test]
        fn score_like_text_never_panics(s in "[ 0-9０-９零一二三四五六七八九十分星.,，。TDtd退订a-z]{0,12}") {
            let _ = parse_reply(&s, Scale::Csat);
            let _ = parse_reply(&s, Scale::Nps);
        }
    }
}
