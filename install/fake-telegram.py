#!/usr/bin/env python3
"""A stand-in for Telegram's Bot API, for install/test.sh only (Telegram
cannot be reached from the test machines): serves /bot<TOKEN>/<method> on
127.0.0.1:PORT, hands the bot one message, /status from chat CHAT, and
writes every message the bot sends to LOG as a JSON line.

  fake-telegram.py PORT TOKEN CHAT LOG
"""
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT, TOKEN, CHAT, LOG = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
UPDATE = {
    "update_id": 1,
    "message": {
        "message_id": 1, "date": int(time.time()),
        "chat": {"id": CHAT, "type": "private", "first_name": "operator"},
        "from": {"id": CHAT, "is_bot": False, "first_name": "operator"},
        "text": "/status",
    },
}


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)) or 0)
        args = json.loads(body or b"{}")
        prefix, _, method = self.path.lstrip("/").partition("/")
        if prefix != f"bot{TOKEN}":
            return self.answer({"ok": False, "error_code": 401, "description": "Unauthorized"})
        method = method.lower()
        if method == "getupdates":
            if int(args.get("offset", 0)) <= 1:
                return self.answer({"ok": True, "result": [UPDATE]})
            time.sleep(min(float(args.get("timeout", 0)), 1.0))
            return self.answer({"ok": True, "result": []})
        if method == "sendmessage":
            with open(LOG, "a") as f:
                f.write(json.dumps({"chat": args.get("chat_id"), "text": args.get("text")}) + "\n")
            return self.answer({"ok": True, "result": {
                "message_id": 2, "date": int(time.time()),
                "chat": {"id": args.get("chat_id"), "type": "private", "first_name": "operator"},
                "text": args.get("text", ""),
            }})
        if method == "getme":
            return self.answer({"ok": True, "result": {"id": 1, "is_bot": True, "first_name": "sluice"}})
        return self.answer({"ok": False, "error_code": 404, "description": "Not Found"})

    def answer(self, payload):
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
