#!/usr/bin/env python3
"""Writes the configs the local services run with: deploy/config/*.toml with the
operator's settings from the environment applied, into OUT (default
$SLUICE_STATE/config). Unset variables keep the example's value.

  SLUICE_KAFKA_BROKERS, SLUICE_ZK, SLUICE_MYSQL_URL    the infrastructure
  SLUICE_NODE_RPC_URL                                   bitcoind's RPC (http://host:port)
  SLUICE_NODE_NAME                                      what health and logs call it
                                                        (default: host:port of the URL)
  SLUICE_NODE_RPC_USER, SLUICE_NODE_RPC_PASSWORD        its credentials, or
  SLUICE_NODE_COOKIE                                    its cookie file
  SLUICE_NODE_ZMQ                                       its zmqpubhashblock (tcp://host:port)
  SLUICE_NODE_WALLET                                    the wallet the payer pays from (its name;
                                                        default: the node's default wallet)
  SLUICE_PAYOUT_ADDRESS                                 where block rewards go
  SLUICE_NETWORK                                        mainnet, testnet, testnet4, signet, regtest
  SLUICE_SOLO_FEE_BPS                                   solo mining on (address logins), the pool
                                                        keeping this many basis points of a solo block
  SLUICE_MIN_DIFFICULTY, SLUICE_START_DIFFICULTY        sserver's lowest and starting difficulty
  SLUICE_TGBOT_CHATS                                    the Telegram chats the bot answers and
                                                        alerts (ids, comma-separated)
  SLUICE_TGBOT_API_URL                                  the Bot API server (default Telegram's)

Every path the services write under /var/lib/sluice in the examples (the
share log, the solved-share log, the bot's subscriptions, the SV2 key) is
moved under $SLUICE_STATE: a pool started with its own state directory
never reads or writes another's.

The bot's token is never written into a config: install/run.sh puts
SLUICE_TGBOT_TOKEN into $SLUICE_STATE/config/tgbot.token (mode 0600), which
tgbot.toml names.

nodesim.toml is copied with only its paths moved: it is the stand-in, not the
operator's node.
"""
import json
import os
import re
import sys
from pathlib import Path
from urllib.parse import urlsplit

HOME = Path(__file__).resolve().parent.parent
NODE_FILES = {"gbtmaker.toml", "jobmaker.toml", "jobmaker-standby.toml", "blkmaker.toml",
              "statshttpd.toml", "payer.toml"}


def quoted(value: str) -> str:
    # A JSON string of printable characters is a valid TOML basic string.
    return json.dumps(value)


def set_key(text: str, key: str, value: str) -> str:
    pattern = re.compile(rf"^{re.escape(key)} = .*$", re.MULTILINE)
    return pattern.sub(lambda _: f"{key} = {value}", text)


def node_name(env: dict) -> str | None:
    """The operator's name for their node, or its RPC address."""
    if env.get("SLUICE_NODE_NAME"):
        return env["SLUICE_NODE_NAME"]
    url = env.get("SLUICE_NODE_RPC_URL")
    return urlsplit(url).netloc.rsplit("@", 1)[-1] or url if url else None


def state_dir(env: dict) -> str:
    return env.get("SLUICE_STATE") or "/var/lib/sluice"


def in_state(text: str, env: dict) -> str:
    """The examples' /var/lib/sluice paths, under SLUICE_STATE."""
    state = state_dir(env).rstrip("/") or "/"
    return re.sub(r"/var/lib/sluice(?=[/\"])", state, text)


def render(name: str, text: str, env: dict) -> str:
    def get(var):
        v = env.get(var, "")
        return v if v else None

    text = in_state(text, env)

    strings = {
        "brokers": get("SLUICE_KAFKA_BROKERS"),
        "connect": get("SLUICE_ZK"),
        "url": get("SLUICE_MYSQL_URL"),
    }
    if name in NODE_FILES:
        strings["rpc_url"] = get("SLUICE_NODE_RPC_URL")
        strings["name"] = node_name(env)
        strings["rpc_user"] = get("SLUICE_NODE_RPC_USER")
        strings["rpc_password"] = get("SLUICE_NODE_RPC_PASSWORD")
        strings["zmq_hashblock"] = get("SLUICE_NODE_ZMQ")
        strings["zmq_rawblock"] = get("SLUICE_NODE_ZMQ_RAWBLOCK")
    if name.startswith("jobmaker"):
        strings["payout_address"] = get("SLUICE_PAYOUT_ADDRESS")
    if name.startswith("jobmaker") or name in ("statshttpd.toml", "payer.toml"):
        strings["network"] = get("SLUICE_NETWORK")
    if name == "payer.toml":
        # The wallet holding the pool's coinbases, on the operator's node.
        strings["wallet"] = get("SLUICE_NODE_WALLET")
    for key, value in strings.items():
        if value is not None:
            text = set_key(text, key, quoted(value))
    solo_fee = get("SLUICE_SOLO_FEE_BPS")
    if name.startswith("jobmaker") and solo_fee is not None:
        if not solo_fee.isdigit() or int(solo_fee) > 10000:
            sys.exit(f"render-config: SLUICE_SOLO_FEE_BPS={solo_fee!r} is not 0 to 10000")
        text = set_key(text, "enabled", "true")
        text = set_key(text, "fee_bps", str(int(solo_fee)))
    if name in NODE_FILES and get("SLUICE_NODE_RPC_URL") and not get("SLUICE_NODE_ZMQ_RAWBLOCK"):
        # The operator's own node: its rawblock only where they name it.
        text = re.sub(r"^zmq_rawblock = .*\n", "", text, flags=re.MULTILINE)
    cookie = get("SLUICE_NODE_COOKIE")
    if name in NODE_FILES and cookie:
        text = re.sub(r"^# ?cookie_file = .*\n", "", text, flags=re.MULTILINE)
        text = re.sub(
            r"^(rpc_password = .*)$",
            lambda m: f"{m.group(1)}\ncookie_file = {quoted(cookie)}",
            text,
            flags=re.MULTILINE,
        )
    if name == "statshttpd.toml" and env.get("SLUICE_TOOLS"):
        dist = f"{env['SLUICE_TOOLS']}/web/node_modules/uplot/dist"
        text = set_key(text, "web_dir", quoted(dist))
    if name == "agent.toml" and get("SLUICE_NODE_RPC_URL"):
        # The example asks for nodesim's CPU difficulty; on a real node the
        # farm starts where the pool says.
        text = set_key(text, "password", quoted(""))
    if name == "tgbot.toml":
        chats = get("SLUICE_TGBOT_CHATS")
        if chats is not None:
            try:
                ids = [int(c) for c in chats.replace(" ", "").split(",") if c]
            except ValueError:
                sys.exit(f"render-config: SLUICE_TGBOT_CHATS={chats!r} is not a list of chat ids")
            text = set_key(text, "allowed_chats", json.dumps(ids))
        api = get("SLUICE_TGBOT_API_URL")
        if api is not None:
            text = set_key(text, "api_url", quoted(api))
    if name == "sserver.toml":
        low = get("SLUICE_MIN_DIFFICULTY")
        start = get("SLUICE_START_DIFFICULTY")
        for var, v in (("SLUICE_MIN_DIFFICULTY", low), ("SLUICE_START_DIFFICULTY", start)):
            if v is not None:
                try:
                    if float(v) <= 0:
                        raise ValueError
                except ValueError:
                    sys.exit(f"render-config: {var}={v!r} is not a positive number")
        if low is not None:
            text = set_key(text, "min", low)
            current = re.search(r"^default = (.*)$", text, re.MULTILINE)
            if start is None and current and float(current.group(1)) < float(low):
                start = low
        if start is not None:
            text = set_key(text, "default", start)
    return text


def main() -> None:
    state = state_dir(os.environ)
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(state) / "config"
    out.mkdir(parents=True, exist_ok=True)
    for src in sorted((HOME / "deploy" / "config").glob("*.toml")):
        text = src.read_text()
        if src.name == "nodesim.toml":
            text = in_state(text, os.environ)
        else:
            text = render(src.name, text, os.environ)
        (out / src.name).write_text(text)
    print(f"configs written to {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
