#!/usr/bin/env bash
# Regenerates prompts/<lang>/<id>.wav (8 kHz, mono, 16-bit PCM) with espeak-ng and sox.
# The text table below is the source of truth; prompts/README.md lists the same texts.
# Usage: scripts/gen-prompts.sh [OUT_DIR]   (env COMPANY overrides the company name)
set -euo pipefail

OUT="${1:-$(dirname "$0")/../prompts}"
COMPANY="${COMPANY:-Example Co}"
EN_VOICE="en-us"
ZH_VOICE="cmn"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

command -v espeak-ng >/dev/null || { echo "espeak-ng not installed" >&2; exit 1; }
command -v sox >/dev/null || { echo "sox not installed" >&2; exit 1; }
mkdir -p "$OUT/en" "$OUT/zh"

# Speak TEXT with VOICE into an 8 kHz mono 16-bit WAV, trimmed of leading silence and with a
# short tail so consecutive prompts do not run together.
speak() {
  local voice="$1" text="$2" out="$3" raw="$TMP/raw.wav"
  espeak-ng -v "$voice" -s 150 -w "$raw" "$text"
  sox "$raw" -r 8000 -c 1 -b 16 -e signed-integer "$out" silence 1 0.02 0.5% pad 0 0.25 norm -3
}

# id|English|Mandarin
PROMPTS=$(cat <<TXT
greeting|Hello, thank you for calling ${COMPANY}. How may I help you?|您好，感谢致电${COMPANY}。请问有什么可以帮您？
main_menu|For opening hours, press 1. For our address, press 2. For returning a product, press 3. To file a complaint, press 4. To look up the status of an order, press 5. For technical support, press 6. For after-sales service, press 7. To speak to a person about a complaint, press 8. To hear these options again, press 9.|查询营业时间，请按1。查询我们的地址，请按2。退货，请按3。投诉，请按4。查询订单状态，请按5。技术支持，请按6。售后服务，请按7。人工投诉，请按8。重听以上选项，请按9。
hours|We are open Monday to Friday, from 9 AM to 6 PM, and Saturday from 10 AM to 4 PM.|我们的营业时间是星期一至星期五上午九点到下午六点，星期六上午十点到下午四点。
closed|We are closed now. We are open Monday to Friday, from 9 AM to 6 PM, and Saturday from 10 AM to 4 PM.|我们现在已经下班。我们的营业时间是星期一至星期五上午九点到下午六点，星期六上午十点到下午四点。
address|Our address is 100 Main Street, Springfield.|我们的地址是春田市主街100号。
returns|To return a product, pack it in its original box with the receipt and send it to our address within 30 days. Your refund is made within 5 working days of receipt.|退货时，请将商品连同收据放入原包装，在三十天内寄到我们的地址。我们收到后五个工作日内退款。
complaints|We are sorry to hear that something went wrong. Please write to complaints at example dot com, and we will answer within 2 working days.|很抱歉给您带来不便。请发送邮件至 complaints at example dot com，我们会在两个工作日内回复。
order_prompt|Please enter your order number, followed by the hash key.|请输入您的订单号，然后按井号键。
order_found_prefix|Your order number|您的订单号
order_status_shipped|has been shipped.|已经发货。
order_status_processing|is being processed.|正在处理中。
order_status_delivered|has been delivered.|已经送达。
order_not_found|Sorry, we could not find that order number.|抱歉，我们找不到这个订单号。
digit_0|zero|零
digit_1|one|一
digit_2|two|二
digit_3|three|三
digit_4|four|四
digit_5|five|五
digit_6|six|六
digit_7|seven|七
digit_8|eight|八
digit_9|nine|九
anything_else|Is there anything else? Press 9 for the main menu, or hang up.|还有其他需要吗？返回主菜单请按9，或者请挂机。
invalid|Sorry, that is not a valid choice.|抱歉，这不是有效的选项。
no_input|Sorry, I did not hear your choice.|抱歉，我没有听到您的选择。
goodbye|Thank you for calling. Goodbye.|感谢您的来电，再见。
please_hold|Please hold.|请稍候。
sorry_wait|Sorry to keep you waiting.|抱歉让您久等了。
queue_position|You are number|您现在排在第
queue_position_end|in the queue.|位。
expected_wait|The expected wait is about|预计等待时间大约
minutes|minutes.|分钟。
feature_ready|You are ready for calls.|您现在可以接听电话了。
feature_not_ready|You are not ready. Calls will not be offered to you.|您已暂停接听，系统不会为您分配来电。
feature_logged_out|You are logged out.|您已退出登录。
feature_refused|Sorry, that is not possible now.|抱歉，现在无法执行该操作。
feature_disposition_saved|Disposition saved.|处理结果已保存。
TXT
)

while IFS='|' read -r id en zh; do
  [ -n "$id" ] || continue
  speak "$EN_VOICE" "$en" "$OUT/en/$id.wav"
  speak "$ZH_VOICE" "$zh" "$OUT/zh/$id.wav"
done <<<"$PROMPTS"

# language_menu is bilingual in both languages: each half in its own voice.
speak "$EN_VOICE" "For English, press 1." "$TMP/lm_en.wav"
speak "$ZH_VOICE" "请说普通话请按2。" "$TMP/lm_zh.wav"
sox "$TMP/lm_en.wav" "$TMP/lm_zh.wav" "$OUT/en/language_menu.wav"
sox "$TMP/lm_zh.wav" "$TMP/lm_en.wav" "$OUT/zh/language_menu.wav"

# hold_music: a soft ~10 s loop (C-Am-F-G pad), made with sox synth rather than speech; it
# fades in and out so the loop point is not a click.
chords=("261.63 329.63 392.00" "220.00 261.63 329.63" "174.61 220.00 261.63" "196.00 246.94 293.66")
parts=()
for i in "${!chords[@]}"; do
  read -r a b c <<<"${chords[$i]}"
  sox -n -r 8000 -c 1 -b 16 "$TMP/chord$i.wav" synth 2.5 sine "$a" sine "$b" sine "$c" \
    channels 1 tremolo 3 20 fade q 0.3 2.5 0.3 vol 0.25
  parts+=("$TMP/chord$i.wav")
done
sox "${parts[@]}" -r 8000 -c 1 -b 16 -e signed-integer "$OUT/en/hold_music.wav" norm -12
cp "$OUT/en/hold_music.wav" "$OUT/zh/hold_music.wav"

echo "prompts written to $OUT ($(ls "$OUT"/en | wc -l) per language)"
