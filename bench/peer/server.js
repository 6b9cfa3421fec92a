// The peer in `make bench`: PostGraphile 4 serving the same bench database as the same app
// role, with row-level security doing the isolation. The tenant is set per transaction through
// pgSettings from request headers (no authentication at all: a shortcut in the peer's favour).
// Started by bench/peer.sh; PORT, DATABASE_URL and POOL from the environment.
const http = require("http");
const { Pool } = require("pg");
const { postgraphile } = require("postgraphile");

const pool = new Pool({ connectionString: process.env.DATABASE_URL, max: Number(process.env.POOL || 32) });
const middleware = postgraphile(pool, "app", {
  pgSettings: async (req) => ({
    "app.org_id": req.headers["x-org-id"],
    "app.user_id": req.headers["x-user-id"],
  }),
  disableDefaultMutations: true,
  disableQueryLog: true,
  graphiql: false,
  retryOnInitFail: false,
});
http.createServer(middleware).listen(Number(process.env.PORT), "127.0.0.1");
