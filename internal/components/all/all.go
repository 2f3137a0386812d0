// Package all imports every built-in component so that it registers
// itself: one line per source kind, destination and auth scheme.
package all

import (
	_ "github.com/ferry-dev/ferry/internal/auth/apikey"    // auth "api_key": a key in a header or the query
	_ "github.com/ferry-dev/ferry/internal/auth/awssigv4"  // auth "aws_sigv4": AWS Signature Version 4
	_ "github.com/ferry-dev/ferry/internal/auth/basic"     // auth "basic": user name and password
	_ "github.com/ferry-dev/ferry/internal/auth/bearer"    // auth "bearer": Authorization: Bearer <token>
	_ "github.com/ferry-dev/ferry/internal/auth/hmac"      // auth "hmac": HMAC request signing
	_ "github.com/ferry-dev/ferry/internal/auth/jwt"       // auth "jwt": a JWT signed with a private key, or exchanged for a token
	_ "github.com/ferry-dev/ferry/internal/auth/oauth2"    // auth "oauth2": client credentials, refresh tokens (rotated ones sealed)
	_ "github.com/ferry-dev/ferry/internal/auth/session"   // auth "session": a login whose response yields a session token
	_ "github.com/ferry-dev/ferry/internal/auth/tokenpool" // auth "token_pool": several tokens, each request on the one with most quota

	_ "github.com/ferry-dev/ferry/internal/dest/httpdest" // destination "http": a request per change or batch to an API
	_ "github.com/ferry-dev/ferry/internal/dest/jsonl"    // destination "jsonl": JSON Lines files, appended
	_ "github.com/ferry-dev/ferry/internal/dest/mysql"    // destination "mysql": MySQL 8 and MariaDB
	_ "github.com/ferry-dev/ferry/internal/dest/natsdest" // destination "nats": JetStream, de-duplicated by Nats-Msg-Id
	_ "github.com/ferry-dev/ferry/internal/dest/postgres" // destination "postgres": PostgreSQL, binary COPY
	_ "github.com/ferry-dev/ferry/internal/dest/sqlite"   // destination "sqlite": the embedded default

	_ "github.com/ferry-dev/ferry/internal/source/mysqlcdc" // source "mysql_cdc": the MySQL/MariaDB binlog
	_ "github.com/ferry-dev/ferry/internal/source/outbox"   // source "outbox": an outbox table, routed by aggregate type
	_ "github.com/ferry-dev/ferry/internal/source/pgcdc"    // source "postgres_cdc": PostgreSQL logical replication
	_ "github.com/ferry-dev/ferry/internal/source/rest"     // source "rest": declarative REST connectors
	_ "github.com/ferry-dev/ferry/internal/source/sqlquery" // source "sql": tables and queries of a database, read-only
	_ "github.com/ferry-dev/ferry/internal/source/webhook"  // source "webhook": verified deliveries, durably queued, routed to tables
)
