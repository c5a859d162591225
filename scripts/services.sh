#!/usr/bin/env bash
# Make sure the local PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379) the tests use are
# up: start them if they are installed but stopped; fail loudly, with the reason, otherwise.
set -uo pipefail

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
redis_up() { [[ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" == "PONG" ]]; }

if ! pg_up; then
  echo "services: PostgreSQL is not answering on 127.0.0.1:5432; starting it" >&2
  if command -v pg_ctlcluster >/dev/null && ls /etc/postgresql >/dev/null 2>&1; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
  fi
  for _ in $(seq 30); do pg_up && break; sleep 1; done
  pg_up || { echo "services: FAILED: PostgreSQL is down and could not be started" >&2; exit 1; }
fi

if ! redis_up; then
  echo "services: Redis is not answering on 127.0.0.1:6379; starting it" >&2
  if command -v redis-server >/dev/null; then
    mkdir -p /tmp/perennial-redis
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
      --dir /tmp/perennial-redis --logfile /tmp/perennial-redis/redis.log || true
  fi
  for _ in $(seq 15); do redis_up && break; sleep 1; done
  redis_up || { echo "services: FAILED: Redis is down and could not be started" >&2; exit 1; }
fi
echo "services: PostgreSQL and Redis are up"
