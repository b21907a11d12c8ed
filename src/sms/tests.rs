use super::*;
use proptest::prelude::*;

#[test]
fn gsm7_detects_and_encodes_default_and_extension() {
    assert_eq!(
        gsm7_encode("Hi @ 5"),
        Some(vec![0x48, 0x69, 0x20, 0x00, 0x20, 0x35])
    );
    // € and [ ] are in the extension table: ESC + septet each.
    assert_eq!(
        gsm7_encode("€[]"),
        Some(vec![0x1B, 0x65, 0x1B, 0x3C, 0x1B, 0x3E])
    );
    assert_eq!(
        gsm7_encode("héllo Ñ"),
        Some(vec![0x68, 0x05, 0x6C, 0x6C, 0x6F, 0x20, 0x5D])
    );
    assert_eq!(gsm7_encode("很好"), None);
    assert_eq!(
        gsm7_encode("ç"),
        None,
        "only the capital Ç is in the default alphabet"
    );
    assert_eq!(gsm7_encode("\u{1b}"), None, "a raw ESC is not a character");
    for s in ["Hi @ 5", "€[]{}|~^\\", "ÄÖÑÜ§¿äöñüà ΔΦΓΛΩΠΨΣΘΞ"] {
        assert_eq!(gsm7_decode(&gsm7_encode(s).unwrap()), s);
    }
}

#[test]
fn short_texts_are_single_parts_in_the_right_coding() {
    let t = encode_text("Thank you for calling. Reply 1-5.", 7).unwrap();
    assert_eq!(t.coding, Coding::Gsm7);
    assert_eq!(t.parts.len(), 1);
    assert_eq!(t.coding.data_coding(), 0);
    let t = encode_text("5 很好", 7).unwrap();
    assert_eq!(t.coding, Coding::Ucs2);
    assert_eq!(t.coding.data_coding(), 8);
    assert_eq!(
        t.parts,
        vec![vec![0x00, 0x35, 0x00, 0x20, 0x5F, 0x88, 0x59, 0x7D]]
    );
    // 160 GSM characters fit one message, 161 do not.
    assert_eq!(encode_text(&"a".repeat(160), 0).unwrap().parts.len(), 1);
    assert_eq!(encode_text(&"a".repeat(161), 0).unwrap().parts.len(), 2);
    // 70 UCS-2 characters fit one message, 71 do not.
    assert_eq!(encode_text(&"好".repeat(70), 0).unwrap().parts.len(), 1);
    assert_eq!(encode_text(&"好".repeat(71), 0).unwrap().parts.len(), 2);
    assert_eq!(encode_text("", 0), Err(SmsError::EmptyText));
}

#[test]
fn ucs2_long_text_splits_with_udh_and_keeps_surrogate_pairs() {
    let text = format!("{}😀{}", "很".repeat(66), "好".repeat(80));
    let t = encode_text(&text, 0x2A).unwrap();
    assert_eq!(t.coding, Coding::Ucs2);
    assert_eq!(t.parts.len(), 3);
    for (i, p) in t.parts.iter().enumerate() {
        assert_eq!(&p[..6], &[0x05, 0x00, 0x03, 0x2A, 3, (i + 1) as u8]);
        assert!(p.len() - 6 <= 134, "part {i} body {} octets", p.len() - 6);
    }
    // The emoji (2 UTF-16 units) would straddle parts 1 and 2: it moves whole to part 2.
    assert_eq!(t.parts[0].len() - 6, 66 * 2);
    let joined: Vec<u8> = t.parts.iter().flat_map(|p| p[6..].to_vec()).collect();
    assert_eq!(ucs2_decode(&joined), text);
    assert_eq!(decode_short_message(8, 0x40, &t.parts[1]), {
        let body = &t.parts[1][6..];
        ucs2_decode(body)
    });
}

#[test]
fn gsm_long_text_never_splits_an_escape() {
    let text = format!("{}€{}", "a".repeat(152), "b".repeat(100));
    let t = encode_text(&text, 1).unwrap();
    assert_eq!(t.coding, Coding::Gsm7);
    assert_eq!(t.parts.len(), 2);
    assert_eq!(
        t.parts[0].len() - 6,
        152,
        "€ needs two septets: it goes to part 2"
    );
    assert_eq!(&t.parts[1][6..8], &[0x1B, 0x65]);
}

#[test]
fn too_long_and_bad_numbers_are_errors() {
    assert!(matches!(
        encode_text(&"好".repeat(67 * 256), 0),
        Err(SmsError::TooLong(256))
    ));
    assert_eq!(check_e164("+8613800138000"), Ok("8613800138000"));
    for bad in [
        "8613800138000",
        "+",
        "+1",
        "+12345678901234567",
        "+86 138",
        "+86a",
    ] {
        assert!(check_e164(bad).is_err(), "{bad}");
    }
}

#[test]
fn receipt_text_fields() {
    let r = parse_receipt_text(
        "id:m12 sub:001 dlvrd:001 submit date:2612041200 done date:2612041201 stat:DELIVRD err:000 text:id:x",
    )
    .unwrap();
    assert_eq!(r.id.as_deref(), Some("m12"));
    assert_eq!(r.stat.as_deref(), Some("DELIVRD"));
    assert_eq!(r.err.as_deref(), Some("000"));
    assert_eq!(parse_receipt_text("5 很好"), None);
    assert_eq!(parse_receipt_text(""), None);
}

#[test]
fn incoming_text_decodes_by_data_coding() {
    assert_eq!(
        decode_short_message(8, 0, &[0x00, 0x35, 0x00, 0x20, 0x5F, 0x88, 0x59, 0x7D]),
        "5 很好"
    );
    assert_eq!(
        decode_short_message(0, 0, b"4 the wait was long"),
        "4 the wait was long"
    );
    assert_eq!(decode_short_message(0, 0, &[0x00, 0x11, 0x35]), "@_5");
    assert_eq!(decode_short_message(3, 0, &[0x35, 0xE9]), "5é");
    // A UDH claiming more octets than there are leaves an empty body, not a panic.
    assert_eq!(decode_short_message(8, 0x40, &[0x20, 0x00]), "");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn any_text_encodes_into_parts_that_decode_back(text in "\\PC{1,400}", reference in any::<u8>()) {
        let t = encode_text(&text, reference).unwrap();
        let bodies: Vec<&[u8]> = if t.parts.len() == 1 {
            vec![&t.parts[0][..]]
        } else {
            t.parts.iter().map(|p| &p[6..]).collect()
        };
        for p in &t.parts {
            prop_assert!(p.len() <= 140 || t.coding == Coding::Gsm7 && p.len() <= 160);
        }
        let joined = bodies.concat();
        let back = match t.coding {
            Coding::Gsm7 => gsm7_decode(&joined),
            Coding::Ucs2 => ucs2_decode(&joined),
        };
        prop_assert_eq!(back, text);
    }

    #[test]
    fn any_bytes_decode_without_panic(dc in any::<u8>(), esm in any::<u8>(), bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = decode_short_message(dc, esm, &bytes);
        let _ = parse_receipt_text(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn any_bytes_from_an_smsc_never_panic_the_pdu_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = smpp::decode_pdus(&bytes);
    }

    #[test]
    fn deliver_sm_with_any_content_is_read_without_panic(
        esm in any::<u8>(),
        dc in any::<u8>(),
        sm in proptest::collection::vec(any::<u8>(), 0..255),
        tlv in proptest::collection::vec(any::<u8>(), 0..40),
        cut in 0usize..400,
    ) {
        // A well-formed deliver_sm (SMPP 3.4 4.6.1) with random esm_class, data_coding,
        // short_message and trailing TLV bytes, sometimes cut short.
        let mut body = Vec::new();
        body.push(0); // service_type ""
        body.extend([1, 1]);
        body.extend(b"8613800138000\0");
        body.extend([0, 0]);
        body.extend(b"10690000\0");
        body.extend([esm, 0, 0, 0, 0, 0, 0, dc, 0, sm.len() as u8]);
        body.extend(&sm);
        body.extend(&tlv);
        body.truncate(cut.max(1).min(body.len()));
        let mut pdu = Vec::new();
        pdu.extend((16 + body.len() as u32).to_be_bytes());
        pdu.extend(0x0000_0005u32.to_be_bytes());
        pdu.extend(0u32.to_be_bytes());
        pdu.extend(7u32.to_be_bytes());
        pdu.extend(body);
        let _ = smpp::decode_pdus(&pdu);
    }

    #[test]
    fn pdu_shaped_bytes_never_panic_the_decoder(
        id in prop_oneof![Just(0x0000_0005u32), Just(0x8000_0004), Just(0x8000_0009), Just(0x8000_0000), any::<u32>()],
        body in proptest::collection::vec(any::<u8>(), 0..300),
        lie in -4i64..8,
    ) {
        // A header whose command_length is right or a little off, then random body bytes.
        let len = (16 + body.len() as i64 + lie).max(0) as u32;
        let mut pdu = Vec::new();
        pdu.extend(len.to_be_bytes());
        pdu.extend(id.to_be_bytes());
        pdu.extend(0u32.to_be_bytes());
        pdu.extend(1u32.to_be_bytes());
        pdu.extend(body);
        let _ = smpp::decode_pdus(&pdu);
    }
}

fn deliver_sm_pdu(esm: u8, dc: u8, sm: &[u8]) -> Vec<u8> {
    let mut body = vec![0, 1, 1];
    body.extend(b"8613800138000\0");
    body.extend([0, 0]);
    body.extend(b"10690000\0");
    body.extend([esm, 0, 0, 0, 0, 0, 0, dc, 0, sm.len() as u8]);
    body.extend(sm);
    let mut pdu = Vec::new();
    pdu.extend((16 + body.len() as u32).to_be_bytes());
    pdu.extend(0x0000_0005u32.to_be_bytes());
    pdu.extend(0u32.to_be_bytes());
    pdu.extend(7u32.to_be_bytes());
    pdu.extend(body);
    pdu
}

fn decode_deliver_sm(pdu: &[u8]) -> rusmpp::pdus::DeliverSm {
    use tokio_util::codec::Decoder;
    let mut buf = bytes::BytesMut::from(pdu);
    let cmd = rusmpp::tokio_codec::CommandCodec::new()
        .decode(&mut buf)
        .unwrap()
        .unwrap();
    match cmd.pdu() {
        Some(rusmpp::Pdu::DeliverSm(sm)) => sm.clone(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn deliver_sm_pdus_read_as_receipts_replies_or_problems() {
    let receipt = deliver_sm_pdu(
        0x04,
        0,
        b"id:abc sub:001 dlvrd:001 stat:DELIVRD err:000 text:",
    );
    assert_eq!(smpp::decode_pdus(&receipt), (1, false));
    assert_eq!(
        smpp::read_deliver_sm(&decode_deliver_sm(&receipt)),
        Ok(SmsEvent::DeliveryReceipt {
            gateway_id: "abc".into(),
            delivered: true,
            state: "DELIVRD".into(),
            error: Some("000".into()),
        })
    );
    let reply = deliver_sm_pdu(0, 8, &[0x00, 0x35, 0x00, 0x20, 0x5F, 0x88, 0x59, 0x7D]);
    assert_eq!(
        smpp::read_deliver_sm(&decode_deliver_sm(&reply)),
        Ok(SmsEvent::Inbound {
            from: "8613800138000".into(),
            to: "10690000".into(),
            text: "5 很好".into(),
        })
    );
    let junk = deliver_sm_pdu(0x04, 0, b"hello");
    assert!(smpp::read_deliver_sm(&decode_deliver_sm(&junk)).is_err());
    // Cut short: an error from the codec, not a panic.
    assert_eq!(smpp::decode_pdus(&receipt[..receipt.len() - 3]), (0, false));
    // A deliver_sm whose body ends inside its mandatory fields (what tests/smsc sends as
    // "malformed"): a decode error.
    let mut truncated = Vec::new();
    truncated.extend(19u32.to_be_bytes());
    truncated.extend(0x0000_0005u32.to_be_bytes());
    truncated.extend(0u32.to_be_bytes());
    truncated.extend(0x7fff_fff0u32.to_be_bytes());
    truncated.extend([0x00, 0x01, 0x01]);
    assert_eq!(smpp::decode_pdus(&truncated), (0, true));
}

/// A deliver_sm PDU from 8613800138000 to 10690000 with these fields and raw TLV bytes.
fn deliver_sm_pdu_with_tlvs(esm: u8, dc: u8, sm: &[u8], tlvs: &[u8]) -> Vec<u8> {
    let mut pdu = deliver_sm_pdu(esm, dc, sm);
    pdu.extend(tlvs);
    let len = pdu.len() as u32;
    pdu[..4].copy_from_slice(&len.to_be_bytes());
    pdu
}

fn tlv(tag: u16, value: &[u8]) -> Vec<u8> {
    let mut t = tag.to_be_bytes().to_vec();
    t.extend((value.len() as u16).to_be_bytes());
    t.extend(value);
    t
}

fn part_of(pdu: &[u8]) -> concat::Part {
    match smpp::read_deliver(&decode_deliver_sm(pdu)) {
        Ok(smpp::Deliver::Part(p)) => p,
        other => panic!("not a part: {other:?}"),
    }
}

#[test]
fn deliver_sm_parts_are_placed_by_udh_or_sar_tlvs() {
    let ucs2 = |s: &str| -> Vec<u8> { s.encode_utf16().flat_map(|u| u.to_be_bytes()).collect() };
    // UDH, 8-bit reference: part 2 of 3, reference 0x2C.
    let mut sm = vec![0x05, 0x00, 0x03, 0x2C, 0x03, 0x02];
    sm.extend(ucs2("很好"));
    let p = part_of(&deliver_sm_pdu(0x40, 8, &sm));
    assert_eq!(p.concat, concat::ConcatRef::new(0x2C, 3, 2).unwrap());
    assert_eq!(
        (p.from.as_str(), p.to.as_str()),
        ("8613800138000", "10690000")
    );
    assert_eq!((p.data_coding, p.payload.clone()), (8, ucs2("很好")));
    // UDH, 16-bit reference.
    let mut sm = vec![0x06, 0x08, 0x04, 0x12, 0x34, 0x02, 0x01];
    sm.extend(b"4 the wait");
    let p = part_of(&deliver_sm_pdu(0x40, 0, &sm));
    assert_eq!(p.concat, concat::ConcatRef::new(0x1234, 2, 1).unwrap());
    assert_eq!(p.payload, b"4 the wait");
    // SAR TLVs (no UDH): sar_msg_ref_num 0x020C, sar_total_segments 0x020E,
    // sar_segment_seqnum 0x020F.
    let tlvs = [
        tlv(0x020C, &[0x01, 0x02]),
        tlv(0x020E, &[2]),
        tlv(0x020F, &[2]),
    ]
    .concat();
    let p = part_of(&deliver_sm_pdu_with_tlvs(0, 0, b" was long", &tlvs));
    assert_eq!(p.concat, concat::ConcatRef::new(0x0102, 2, 2).unwrap());
    assert_eq!(p.payload, b" was long");
    // Two of the three SAR TLVs, or a "1 of 1" header: a whole text.
    let two = [tlv(0x020C, &[0, 1]), tlv(0x020E, &[2])].concat();
    assert_eq!(
        smpp::read_deliver(&decode_deliver_sm(&deliver_sm_pdu_with_tlvs(
            0, 0, b"5", &two
        ))),
        Ok(smpp::Deliver::Event(SmsEvent::Inbound {
            from: "8613800138000".into(),
            to: "10690000".into(),
            text: "5".into(),
        }))
    );
    let one_of_one = [0x05, 0x00, 0x03, 0x09, 0x01, 0x01, b'5'];
    assert!(matches!(
        smpp::read_deliver(&decode_deliver_sm(&deliver_sm_pdu(0x40, 0, &one_of_one))),
        Ok(smpp::Deliver::Event(SmsEvent::Inbound { text, .. })) if text == "5"
    ));
    // The text in message_payload (0x0424) with an empty short_message.
    let payload = tlv(0x0424, &ucs2("5 很好"));
    assert!(matches!(
        smpp::read_deliver(&decode_deliver_sm(&deliver_sm_pdu_with_tlvs(0, 8, b"", &payload))),
        Ok(smpp::Deliver::Event(SmsEvent::Inbound { text, .. })) if text == "5 很好"
    ));
    // read_deliver_sm still reads one part on its own (the fuzz tests use it).
    let mut sm = vec![0x05, 0x00, 0x03, 0x2C, 0x03, 0x02];
    sm.extend(ucs2("很好"));
    assert!(matches!(
        smpp::read_deliver_sm(&decode_deliver_sm(&deliver_sm_pdu(0x40, 8, &sm))),
        Ok(SmsEvent::Inbound { text, .. }) if text == "很好"
    ));
}

#[test]
fn latency_histogram_quantiles_are_within_an_eighth() {
    use std::time::Duration;
    let h = smpp::LatencyHistogram::default();
    assert_eq!(h.quantile(0.99), None);
    // 1..=1000 ms, one each: p50 ~ 500 ms, p99 ~ 990 ms, within the bucket width.
    for ms in 1..=1000u64 {
        h.record(Duration::from_millis(ms));
    }
    assert_eq!(h.count(), 1000);
    let near = |q: f64, want_ms: f64| {
        let got = h.quantile(q).unwrap().as_secs_f64() * 1000.0;
        assert!(
            got >= want_ms && got <= want_ms * 1.125,
            "q{q}: {got} ms, want {want_ms}"
        );
    };
    near(0.5, 500.0);
    near(0.99, 990.0);
    near(1.0, 1000.0);
    h.record(Duration::from_micros(3));
    assert_eq!(h.quantile(0.0), Some(Duration::from_micros(3)));
    h.record(Duration::from_secs(100_000));
    assert!(h.quantile(1.0).unwrap() >= Duration::from_secs(100_000));
}
