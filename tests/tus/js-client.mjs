// tus-js-client (the tus reference client for browsers and Node) against the service, driven by
// tests/api/tus_clients.rs. Prints one JSON line per step; exits non-zero on any error.
//
//   node js-client.mjs abort-and-resume ENDPOINT TOKEN FILE CHUNK_BYTES
//       one chunk, abort(), then a new Upload with the same uploadUrl resumes from the server's
//       offset and finishes
//   node js-client.mjs resume ENDPOINT TOKEN FILE UPLOAD_URL
//       a client that knows only its upload's URL (its last answer lost, or its connection reset
//       after the last byte) finishes it: sending nothing if the server says it is whole
import { readFileSync } from "node:fs";
import { basename } from "node:path";
import * as tus from "tus-js-client";

const [mode, endpoint, token, path, extra] = process.argv.slice(2);
const file = readFileSync(path);
const say = (step, fields) => console.log(JSON.stringify({ step, ...fields }));

function upload(options) {
  return new Promise((resolve, reject) => {
    let sent = 0;
    const up = new tus.Upload(file, {
      endpoint,
      headers: { Authorization: `Bearer ${token}` },
      metadata: { filename: basename(path), filetype: "application/octet-stream" },
      retryDelays: [200, 500, 1000],
      ...options,
      onChunkComplete: (chunk, accepted) => {
        sent += chunk;
        options.onChunkComplete?.(up, accepted);
      },
      onError: reject,
      onSuccess: () => resolve({ up, sent }),
    });
    options.started?.(up);
    up.start();
  });
}

if (mode === "abort-and-resume") {
  const chunkSize = Number(extra);
  let aborted;
  const firstDone = new Promise((resolve) => {
    aborted = resolve;
  });
  upload({
    chunkSize,
    onChunkComplete: (up, accepted) => {
      up.abort();
      aborted({ url: up.url, accepted });
    },
  }).catch((e) => {
    console.error(e);
    process.exit(1);
  });
  const { url, accepted } = await firstDone;
  say("aborted", { url, accepted });
  const { sent } = await upload({ uploadUrl: url, chunkSize });
  say("finished", { url, sent, size: file.length });
} else if (mode === "resume") {
  const { sent, up } = await upload({ uploadUrl: extra });
  say("finished", { url: up.url, sent, size: file.length });
} else {
  console.error(`unknown mode ${mode}`);
  process.exit(2);
}
