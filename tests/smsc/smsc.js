#!/usr/bin/env node
// A small SMPP v3.4 SMSC for ccswitch's SMS gateway tests (tests/sms_smpp.rs), built on the
// npm `smpp` package (node-smpp). Listens on 127.0.0.1 only.
//
//   node smsc.js PORT SYSTEM_ID PASSWORD [--silent]
//
// stdout: one JSON line per event ({"event":"listening"|"bind"|"submit_sm"|...}).
// stdin: one JSON command per line:
//   {"cmd":"receipt","message_id":"m1","stat":"DELIVRD"}  delivery receipt for a submit
//       ("tlv":false leaves out receipted_message_id; "text":"..." replaces the receipt text)
//   {"cmd":"mo","from":"8613800138000","to":"10690000","text":"5 很好"}  an MO reply (UCS-2
//       when the text is not ASCII, data_coding 0 otherwise)
//   {"cmd":"mo_long","text":"...","parts":3,"order":[3,1,2],"ref":7,"how":"udh8"}  a long MO
//       reply split into `parts` deliver_sm (UCS-2 when not ASCII), sent in `order` (1-based
//       part numbers; leave some out to send an incomplete set). "how": "udh8" (IEI 0x00),
//       "udh16" (IEI 0x08) or "sar" (sar_* TLVs, no UDH).
//   {"cmd":"throttle","count":2}    answer the next N submit_sm with ESME_RTHROTTLED (0x58)
//   {"cmd":"fail","count":1,"status":11}  answer the next N submit_sm with that error status
//   {"cmd":"nack","count":1,"status":3}  answer the next N submit_sm with generic_nack
//   {"cmd":"drop"}                  close every bound session's TCP connection
//   {"cmd":"malformed"}             write a deliver_sm whose body is cut short
//   {"cmd":"mute"}                  from now on, read PDUs but never answer
//   {"cmd":"delay","ms":300}        answer submit_sm after that long (records show how many
//                                   submit_sm were waiting for an answer: "outstanding")
// --silent: accept TCP connections and never answer anything (not even bind).
// --drop-after-bind: accept every bind, then close the connection at once.
'use strict';

const net = require('net');
const readline = require('readline');
const smpp = require('smpp');

const [portArg, systemId, password, ...flags] = process.argv.slice(2);
const port = Number(portArg);
if (!Number.isInteger(port) || port <= 0 || !systemId || password === undefined) {
    process.stderr.write('usage: smsc.js PORT SYSTEM_ID PASSWORD [--silent]\n');
    process.exit(2);
}
const silent = flags.includes('--silent');
const dropAfterBind = flags.includes('--drop-after-bind');

function emit(obj) {
    obj.t = Date.now();
    process.stdout.write(JSON.stringify(obj) + '\n');
}

// Keep every PDU's raw bytes, so the log shows short_message exactly as it came on the wire.
const origFromBuffer = smpp.PDU.prototype.fromBuffer;
smpp.PDU.prototype.fromBuffer = function (buffer) {
    this._raw = Buffer.from(buffer);
    return origFromBuffer.call(this, buffer);
};

// submit_sm body (SMPP 3.4 section 4.4.1) up to short_message, read from the raw bytes.
function rawSubmit(raw) {
    let at = 16;
    const cstr = () => {
        const end = raw.indexOf(0, at);
        const s = raw.slice(at, end).toString('latin1');
        at = end + 1;
        return s;
    };
    const byte = () => raw[at++];
    const out = {};
    out.service_type = cstr();
    out.source_addr_ton = byte();
    out.source_addr_npi = byte();
    out.source_addr = cstr();
    out.dest_addr_ton = byte();
    out.dest_addr_npi = byte();
    out.destination_addr = cstr();
    out.esm_class = byte();
    out.protocol_id = byte();
    out.priority_flag = byte();
    cstr(); // schedule_delivery_time
    cstr(); // validity_period
    out.registered_delivery = byte();
    byte(); // replace_if_present_flag
    out.data_coding = byte();
    byte(); // sm_default_msg_id
    const len = byte();
    const sm = raw.slice(at, at + len);
    at += len;
    out.short_message_hex = sm.toString('hex');
    const tlvs = {};
    while (at + 4 <= raw.length) {
        const tag = raw.readUInt16BE(at);
        const l = raw.readUInt16BE(at + 2);
        tlvs['0x' + tag.toString(16).padStart(4, '0')] = raw.slice(at + 4, at + 4 + l).toString('hex');
        at += 4 + l;
    }
    out.tlvs = tlvs;
    if (out.esm_class & 0x40 && sm.length > 0) {
        const udhl = sm[0];
        out.udh_hex = sm.slice(0, udhl + 1).toString('hex');
        const udh = sm.slice(1, udhl + 1);
        // Concatenation IE 0x00: ref (8-bit), total, seq.
        for (let i = 0; i + 1 < udh.length; i += 2 + udh[i + 1]) {
            if (udh[i] === 0x00 && udh[i + 1] === 3) {
                out.concat = { ref: udh[i + 2], total: udh[i + 3], seq: udh[i + 4] };
            }
        }
        out.payload_hex = sm.slice(udhl + 1).toString('hex');
    } else {
        out.payload_hex = out.short_message_hex;
    }
    return out;
}

const sessions = new Set();
let nextId = 1;
let throttleLeft = 0;
let failLeft = 0;
let failStatus = 0;
let nackLeft = 0;
let nackStatus = 0;
let muted = false;
let delayMs = 0;
let outstanding = 0;

function ucs2(text) {
    const le = Buffer.from(text, 'utf16le');
    return le.swap16();
}

function isAscii(text) {
    return /^[\x20-\x7e]*$/.test(text);
}

function handleSession(session) {
    let bound = false;
    session.on('error', (e) => emit({ event: 'session_error', error: String(e.message || e) }));
    session.on('close', () => {
        sessions.delete(session);
        emit({ event: 'closed' });
    });
    session.on('bind_transceiver', (pdu) => {
        if (muted) return;
        const ok = pdu.system_id === systemId && pdu.password === password;
        emit({
            event: 'bind',
            system_id: pdu.system_id,
            system_type: pdu.system_type,
            interface_version: pdu.interface_version,
            ok,
        });
        if (!ok) {
            session.send(pdu.response({ command_status: smpp.ESME_RBINDFAIL }));
            session.close();
            return;
        }
        bound = true;
        sessions.add(session);
        session.send(pdu.response({ system_id: 'test-smsc' }));
        if (dropAfterBind) setTimeout(() => session.destroy(), 20);
    });
    session.on('enquire_link', (pdu) => {
        emit({ event: 'enquire_link' });
        if (!muted) session.send(pdu.response());
    });
    session.on('unbind', (pdu) => {
        emit({ event: 'unbind' });
        session.send(pdu.response());
        session.close();
    });
    session.on('deliver_sm_resp', (pdu) => {
        emit({ event: 'deliver_sm_resp', sequence_number: pdu.sequence_number, command_status: pdu.command_status });
    });
    session.on('generic_nack', (pdu) => {
        emit({ event: 'generic_nack', sequence_number: pdu.sequence_number });
    });
    session.on('submit_sm', (pdu) => {
        if (muted) {
            emit({ event: 'submit_sm_ignored' });
            return;
        }
        if (!bound) {
            session.send(pdu.response({ command_status: smpp.ESME_RINVBNDSTS }));
            return;
        }
        outstanding += 1;
        const rec = Object.assign(
            { event: 'submit_sm', sequence_number: pdu.sequence_number, outstanding },
            rawSubmit(pdu._raw),
        );
        const answer = (resp) => {
            const go = () => {
                outstanding -= 1;
                session.send(resp);
            };
            if (delayMs > 0) setTimeout(go, delayMs);
            else go();
        };
        if (throttleLeft > 0) {
            throttleLeft -= 1;
            rec.status = 0x58;
            emit(rec);
            answer(pdu.response({ command_status: smpp.ESME_RTHROTTLED }));
            return;
        }
        if (nackLeft > 0) {
            nackLeft -= 1;
            rec.status = nackStatus;
            rec.nack = true;
            emit(rec);
            answer(new smpp.PDU('generic_nack', {
                sequence_number: pdu.sequence_number,
                command_status: nackStatus,
            }));
            return;
        }
        if (failLeft > 0) {
            failLeft -= 1;
            rec.status = failStatus;
            emit(rec);
            answer(pdu.response({ command_status: failStatus }));
            return;
        }
        const messageId = 'm' + nextId++;
        rec.status = 0;
        rec.message_id = messageId;
        emit(rec);
        answer(pdu.response({ message_id: messageId }));
    });
}

function anySession() {
    for (const s of sessions) return s;
    return null;
}

function command(line) {
    let c;
    try {
        c = JSON.parse(line);
    } catch (e) {
        emit({ event: 'bad_command', line });
        return;
    }
    const s = anySession();
    switch (c.cmd) {
        case 'receipt': {
            if (!s) return emit({ event: 'no_session', cmd: c.cmd });
            const stat = c.stat || 'DELIVRD';
            const text = c.text !== undefined ? c.text : `id:${c.message_id} sub:001 dlvrd:${stat === 'DELIVRD' ? '001' : '000'} ` +
                `submit date:2612041200 done date:2612041201 stat:${stat} err:${c.err || '000'} text:`;
            const receipt = {
                source_addr: c.from || '8613800138000',
                destination_addr: c.to || '10690000',
                esm_class: 0x04,
                data_coding: 0,
                short_message: Buffer.from(text, 'latin1'),
            };
            if (c.tlv !== false) {
                receipt.receipted_message_id = c.message_id;
                receipt.message_state = stat === 'DELIVRD' ? 2 : 5;
            }
            s.deliver_sm(receipt);
            emit({ event: 'sent_receipt', message_id: c.message_id, stat });
            break;
        }
        case 'mo': {
            if (!s) return emit({ event: 'no_session', cmd: c.cmd });
            const ascii = isAscii(c.text);
            s.deliver_sm({
                source_addr: c.from || '8613800138000',
                destination_addr: c.to || '10690000',
                esm_class: 0,
                data_coding: ascii ? 0 : 8,
                short_message: ascii ? Buffer.from(c.text, 'latin1') : ucs2(c.text),
            });
            emit({ event: 'sent_mo', text: c.text, data_coding: ascii ? 0 : 8 });
            break;
        }
        case 'mo_long': {
            if (!s) return emit({ event: 'no_session', cmd: c.cmd });
            const ascii = isAscii(c.text);
            const body = ascii ? Buffer.from(c.text, 'latin1') : ucs2(c.text);
            const total = c.parts || 2;
            const ref = c.ref === undefined ? 7 : c.ref;
            const how = c.how || 'udh8';
            // Equal chunks; UCS-2 chunks on 2-octet boundaries.
            const unit = ascii ? 1 : 2;
            const per = Math.ceil(body.length / unit / total) * unit;
            const order = c.order || [...Array(total).keys()].map((i) => i + 1);
            for (const seq of order) {
                const chunk = body.slice((seq - 1) * per, seq * per);
                const pdu = {
                    source_addr: c.from || '8613800138000',
                    destination_addr: c.to || '10690000',
                    esm_class: 0,
                    data_coding: ascii ? 0 : 8,
                };
                if (how === 'sar') {
                    pdu.short_message = chunk;
                    pdu.sar_msg_ref_num = ref;
                    pdu.sar_total_segments = total;
                    pdu.sar_segment_seqnum = seq;
                } else {
                    const udh = how === 'udh16'
                        ? Buffer.from([6, 0x08, 4, (ref >> 8) & 0xff, ref & 0xff, total, seq])
                        : Buffer.from([5, 0x00, 3, ref & 0xff, total, seq]);
                    pdu.esm_class = 0x40;
                    pdu.short_message = Buffer.concat([udh, chunk]);
                }
                s.deliver_sm(pdu);
            }
            emit({ event: 'sent_mo_long', text: c.text, parts: total, order, how });
            break;
        }
        case 'throttle':
            throttleLeft = c.count || 1;
            emit({ event: 'ok', cmd: c.cmd });
            break;
        case 'fail':
            failLeft = c.count || 1;
            failStatus = c.status || 0x0b;
            emit({ event: 'ok', cmd: c.cmd });
            break;
        case 'nack':
            nackLeft = c.count || 1;
            nackStatus = c.status || 0x03;
            emit({ event: 'ok', cmd: c.cmd, status: nackStatus });
            break;
        case 'drop': {
            const n = sessions.size;
            for (const x of [...sessions]) x.destroy();
            emit({ event: 'dropped', sessions: n });
            break;
        }
        case 'malformed': {
            if (!s) return emit({ event: 'no_session', cmd: c.cmd });
            // deliver_sm header (id 0x00000005) with a 3-byte body: the mandatory fields end early.
            const body = Buffer.from([0x00, 0x01, 0x01]);
            const head = Buffer.alloc(16);
            head.writeUInt32BE(16 + body.length, 0);
            head.writeUInt32BE(0x00000005, 4);
            head.writeUInt32BE(0, 8);
            head.writeUInt32BE(0x7ffffff0, 12);
            s.socket.write(Buffer.concat([head, body]));
            emit({ event: 'sent_malformed' });
            break;
        }
        case 'delay':
            delayMs = c.ms || 0;
            emit({ event: 'ok', cmd: c.cmd });
            break;
        case 'mute':
            muted = true;
            emit({ event: 'ok', cmd: c.cmd });
            break;
        default:
            emit({ event: 'bad_command', line });
    }
}

let server;
if (silent) {
    server = net.createServer((socket) => {
        emit({ event: 'silent_accept' });
        socket.on('data', () => {});
        socket.on('error', () => {});
    });
} else {
    server = smpp.createServer(handleSession);
}
server.on('error', (e) => {
    process.stderr.write(`smsc: ${e.message}\n`);
    process.exit(1);
});
server.listen(port, '127.0.0.1', () => emit({ event: 'listening', port }));

readline.createInterface({ input: process.stdin }).on('line', (line) => {
    if (line.trim()) command(line);
});
// The test harness closing our stdin means it is done with us.
process.stdin.on('end', () => process.exit(0));
