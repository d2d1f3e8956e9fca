#!/usr/bin/env bash
# test-kafka.sh: the end-to-end suite and the fault tests against Apache
# Kafka (KRaft), fetched from Maven Central with Maven and started with the
# machine's Java on loopback. No Docker. Behind `make test-kafka`.
#
# What it does, in order:
#   1. fetches the pinned Kafka release (pom.xml) into .cache/kafka/<version>
#      unless it is there already;
#   2. generates a throwaway CA, broker and client certificates and starts
#      one combined broker+controller with three listeners: PLAINTEXT,
#      SASL_SSL (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) and SSL with client
#      certificates required (mutual TLS); runs, with
#      AUDITPIPE_TEST_KAFKA_BROKERS pointing at the PLAINTEXT listener and
#      the AUDITPIPE_TEST_KAFKA_SASL_SSL... variables (see
#      export_security_env) at the others, the Kafka adapter conformance
#      and security suites, the producer webhook tests, the all-in-one
#      end-to-end tests, the consumer group scaling tests, the
#      processor's reload tests and its kill -9 exactly-once test; stops
#      the broker;
#   3. starts a 3-node cluster (3 combined nodes, a quorum of 3) and runs the
#      fault tests of deploy/local/faults against it; stops it;
#   4. starts a fresh 3-node cluster with SASL_SSL listeners and runs the
#      fleet test of deploy/local/fleet: every stage as its own processes on
#      SASL_SSL (2 producers, 2 processors, 2 CLS consumers, 1 store
#      consumer), one kill -9 per stage under load; it prints one
#      "fleet: ..." summary line; stops it.
# Everything it started is stopped on exit, on failure and on Ctrl-C too.
#
# Environment:
#   KAFKA_SUITES      which parts to run: "single faults fleet" (default), or
#                     any of them;
#                     "smoke" only starts and stops both clusters; "up"
#                     starts both and waits for Ctrl-C (tests by hand);
#                     "up1" the same with the single broker only.
#   KAFKA_CACHE       where the jars are kept (default <repo>/.cache/kafka).
#   KAFKA_HEAP        max heap of each broker JVM (default 512m).
#   KAFKA_KEEP_WORK=1 keep the brokers' temp directory (logs) after the run.
#   GO_TEST_FLAGS     flags for every go test (default -race).
#   KAFKA_KNOWN_FAILURES  fault tests skipped as known bugs (see below);
#                     empty runs them all.
#   AUDITPIPE_FAULT_SEED, AUDITPIPE_FAULT_ROUNDS, AUDITPIPE_FAULT_OUTAGE
#                     replay a fault test's random choices, set the number
#                     of kill -9 rounds (4), the cluster outage (60s).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
suites=${KAFKA_SUITES:-single faults fleet}
heap=${KAFKA_HEAP:-512m}
go_test_flags=${GO_TEST_FLAGS:--race}
# Known failures: fault tests that fail because of a bug they found on
# Apache Kafka that is not fixed yet. They are skipped, loudly, so that the
# rest of the suite still gates CI; `KAFKA_KNOWN_FAILURES= make test-kafka`
# runs them. Add an entry only with an open issue; remove it with the fix.
# (None now: the MESSAGE_TOO_LARGE stall these tests found is fixed.)
known_failures=${KAFKA_KNOWN_FAILURES-}

log() { printf '== test-kafka: %s\n' "$*" >&2; }
die() { printf 'test-kafka: %s\n' "$*" >&2; exit 1; }

# --- prerequisites ---------------------------------------------------------

command -v java >/dev/null 2>&1 || die "java not found: Apache Kafka needs a Java 17+ runtime (Debian: apt-get install openjdk-17-jre-headless). 'make test' does not need it."
command -v mvn >/dev/null 2>&1 || die "mvn not found: the Kafka jars are fetched from Maven Central with Maven (Debian: apt-get install maven). 'make test' does not need it."
command -v go >/dev/null 2>&1 || die "go not found"
java_major=$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')
[[ ${java_major%%.*} -ge 17 ]] 2>/dev/null || die "java $java_major found; Apache Kafka 4 needs Java 17 or newer"

kafka_version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/pom.xml")
[[ -n $kafka_version ]] || die "no <kafka.version> in $here/pom.xml"
cache=${KAFKA_CACHE:-$root/.cache/kafka}/$kafka_version

# --- fetch -----------------------------------------------------------------

# The jars land in a temp dir first and are moved in place only when Maven
# finished, so an interrupted fetch is never taken for a cached one.
fetch() {
	if [[ -f $cache/complete ]]; then
		log "Apache Kafka $kafka_version from cache $cache"
		return
	fi
	log "fetching Apache Kafka $kafka_version from Maven Central into $cache"
	local fetch_started=$SECONDS
	mkdir -p "$(dirname "$cache")"
	local tmp="$cache.tmp.$$"
	rm -rf "$tmp"
	mkdir -p "$tmp"
	if ! mvn -B -Dstyle.color=never -f "$here/pom.xml" dependency:copy-dependencies \
		-DincludeScope=runtime -DoutputDirectory="$tmp/libs" >"$tmp/mvn.log" 2>&1; then
		tail -n 40 "$tmp/mvn.log" >&2
		rm -rf "$tmp"
		die "mvn could not fetch org.apache.kafka:kafka_2.13:$kafka_version (is Maven Central reachable?)"
	fi
	log "fetched $(find "$tmp/libs" -name '*.jar' | wc -l) jars in $((SECONDS - fetch_started)) s"
	ls "$tmp/libs"/kafka_2.13-"$kafka_version".jar >/dev/null || die "fetch: kafka_2.13-$kafka_version.jar missing in $tmp/libs"
	touch "$tmp/complete"
	rm -rf "$cache"
	mv "$tmp" "$cache"
}
fetch
classpath="$cache/libs/*"

# --- brokers ---------------------------------------------------------------

work=$(mktemp -d "${TMPDIR:-/tmp}/auditpipe-kafka.XXXXXX")

# stop_nodes stops every node under dir: SIGTERM, then SIGKILL after 10 s
# (the last nodes of a quorum can wait long for a controller that is gone).
# It reads the pid files at the time of the call, so a node that a fault
# test killed and restarted is stopped too.
stop_nodes() {
	local dir=$1 pidfile pid pids=()
	for pidfile in "$dir"/*/pid; do
		[[ -f $pidfile ]] || continue
		pid=$(<"$pidfile")
		if kill -0 "$pid" 2>/dev/null; then
			kill -TERM "$pid" 2>/dev/null || true
			pids+=("$pid")
		fi
	done
	for _ in $(seq 1 100); do
		local alive=0
		for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
		[[ $alive == 0 ]] && return 0
		sleep 0.1
	done
	for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	# Stop everything even if a step of the cleanup fails.
	set +e
	# The "up" modes' sleep would outlive the script by up to an hour.
	[[ -n ${sleep_pid:-} ]] && kill "$sleep_pid" 2>/dev/null
	if [[ $rc != 0 ]]; then
		for f in "$work"/*/*/node.log; do
			[[ -f $f ]] || continue
			printf '\n--- last warnings of %s\n' "$f" >&2
			grep -E '\] (WARN|ERROR) ' "$f" | tail -n 20 >&2 || true
		done
	fi
	for d in "$work"/*/; do [[ -d $d ]] && stop_nodes "$d"; done
	if [[ ${KAFKA_KEEP_WORK:-} == 1 ]]; then
		log "kept $work"
	else
		rm -rf "$work"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

used_ports=" "
# free_port prints a loopback port that nothing listens on and that this run
# has not handed out yet.
free_port() {
	local p
	for _ in $(seq 1 200); do
		# Below Linux's ephemeral range (32768-60999), where client
		# sockets of the tests could take the port between this check and
		# the broker's bind.
		p=$((20000 + RANDOM % 12000))
		[[ $used_ports == *" $p "* ]] && continue
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			used_ports+="$p "
			echo "$p"
			return 0
		fi
	done
	die "no free loopback port found"
}

# --- security (SASL_SSL, mutual TLS) -----------------------------------------
#
# Reusable for any cluster of this script: the "single" and "fleet" suites
# below run on such clusters, as
#
#     make_pki                          # once per run; sets $pki
#     start_cluster fleet 3 sasl_ssl    # sets $brokers, $sasl_ssl_brokers, $mtls_brokers
#     export_security_env               # the AUDITPIPE_TEST_KAFKA_* variables below
#     gotest ...
#     unset_security_env
#
# Each node of a sasl_ssl cluster then has, next to its PLAINTEXT listener
# (inter-broker traffic, topic creation by this script, the other suites):
#   - SASL_SSL: TLS with the test CA's broker certificate (valid for
#     127.0.0.1 and localhost), SASL PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512;
#     one user, $sasl_user, with the same password for all three (SCRAM
#     credentials are written at storage format time with --add-scram,
#     PLAIN is in the listener's JAAS config);
#   - MTLS: TLS that requires a client certificate signed by the test CA
#     (principal User:CN=auditpipe-test-client), no SASL.
# No authorizer: an authenticated client may do anything. Each node's
# directory also gets sasl_ssl_address and mtls_address files, next to
# address.

# make_pki writes the test certificates and the SASL password into
# $work/pki (see internal/kafka/kafkatest/testpki for the file names) and
# sets $pki. Idempotent within a run.
sasl_user=alice
make_pki() {
	pki=$work/pki
	[[ -f $pki/ca.crt ]] && return 0
	(cd "$root/deploy/local" && go run ./cmd/testcerts -dir "$pki" -hosts 127.0.0.1,localhost) ||
		die "testcerts: could not write the test certificates"
	# Hex: safe inside --add-scram's [name=..,password=..] and JAAS quotes.
	od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$pki/$sasl_user.password"
	log "test CA and certificates in $pki"
}

# secure_node_properties NODE_PROPERTIES SASL_SSL_PORT MTLS_PORT adds the
# SASL_SSL and MTLS listeners to a node's server.properties.
secure_node_properties() {
	local props=$1 sport=$2 mport=$3 pw
	pw=$(<"$pki/$sasl_user.password")
	sed -i -e "s|^listeners=\(.*\)|listeners=\1,SASL_SSL://127.0.0.1:$sport,MTLS://127.0.0.1:$mport|" \
		-e "s|^advertised.listeners=\(.*\)|advertised.listeners=\1,SASL_SSL://127.0.0.1:$sport,MTLS://127.0.0.1:$mport|" \
		-e "s|^listener.security.protocol.map=\(.*\)|listener.security.protocol.map=\1,SASL_SSL:SASL_SSL,MTLS:SSL|" \
		"$props"
	cat >>"$props" <<EOF

# Added by test-kafka.sh (secure_node_properties): client listeners with
# TLS, the certificates of $pki in Kafka's PEM format (no keytool).
ssl.keystore.type=PEM
ssl.keystore.location=$pki/server.keystore.pem
ssl.truststore.type=PEM
ssl.truststore.location=$pki/ca.crt
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$sasl_user="$pw";
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.mtls.ssl.client.auth=required
EOF
}

# export_security_env exports where the tests find the secure listeners of
# the cluster that start_cluster ... sasl_ssl started last.
export_security_env() {
	export AUDITPIPE_TEST_KAFKA_SASL_SSL=$sasl_ssl_brokers
	export AUDITPIPE_TEST_KAFKA_MTLS=$mtls_brokers
	export AUDITPIPE_TEST_KAFKA_PKI=$pki
	export AUDITPIPE_TEST_KAFKA_CA=$pki/ca.crt
	export AUDITPIPE_TEST_KAFKA_SASL_USER=$sasl_user
	export AUDITPIPE_TEST_KAFKA_SASL_PASSWORD_FILE=$pki/$sasl_user.password
}

unset_security_env() {
	unset AUDITPIPE_TEST_KAFKA_SASL_SSL AUDITPIPE_TEST_KAFKA_MTLS AUDITPIPE_TEST_KAFKA_PKI \
		AUDITPIPE_TEST_KAFKA_CA AUDITPIPE_TEST_KAFKA_SASL_USER AUDITPIPE_TEST_KAFKA_SASL_PASSWORD_FILE
}

# start_cluster NAME N [sasl_ssl] starts N combined nodes (quorum of N)
# under $work/NAME/node<i>, each with its own log dir, and waits until
# they serve. It sets $brokers to the PLAINTEXT bootstrap list; with
# sasl_ssl (call make_pki first) also $sasl_ssl_brokers and $mtls_brokers.
start_cluster() {
	local name=$1 n=$2 security=${3:-} dir="$work/$1" i
	local repl=$n min_isr=1
	[[ $n -ge 3 ]] && min_isr=2
	[[ -z $security || $security == sasl_ssl ]] || die "start_cluster: unknown security mode $security"
	[[ -z $security || -n ${pki:-} ]] || die "start_cluster $name $n sasl_ssl: call make_pki first"
	local ports=() cports=() sports=() mports=() voters=""
	for ((i = 1; i <= n; i++)); do
		ports[i]=$(free_port)
		cports[i]=$(free_port)
		if [[ -n $security ]]; then
			sports[i]=$(free_port)
			mports[i]=$(free_port)
		fi
		voters+="${voters:+,}$i@127.0.0.1:${cports[i]}"
	done
	# A cluster id is 16 random bytes in URL-safe base64. One in 64 starts
	# with '-', which kafka-storage's argument parser reads as an option
	# ("--cluster-id: expected one argument"); Kafka's own Uuid.randomUuid
	# draws again for the same reason, and so does this.
	local cluster_id=-
	while [[ $cluster_id == -* ]]; do
		cluster_id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
	done
	local format_args=()
	if [[ -n $security ]]; then
		local pw
		pw=$(<"$pki/$sasl_user.password")
		format_args=(--add-scram "SCRAM-SHA-512=[name=$sasl_user,password=$pw]"
			--add-scram "SCRAM-SHA-256=[name=$sasl_user,password=$pw]")
	fi
	brokers=""
	sasl_ssl_brokers=""
	mtls_brokers=""
	for ((i = 1; i <= n; i++)); do
		local nd="$dir/node$i"
		mkdir -p "$nd/data"
		sed -e "s|@NODE_ID@|$i|" -e "s|@VOTERS@|$voters|" \
			-e "s|@PORT@|${ports[i]}|g" -e "s|@CONTROLLER_PORT@|${cports[i]}|g" \
			-e "s|@LOG_DIR@|$nd/data|" -e "s|@REPLICATION@|$repl|g" -e "s|@MIN_ISR@|$min_isr|g" \
			"$here/server.properties.tmpl" >"$nd/server.properties"
		echo "127.0.0.1:${ports[i]}" >"$nd/address"
		brokers+="${brokers:+,}127.0.0.1:${ports[i]}"
		if [[ -n $security ]]; then
			secure_node_properties "$nd/server.properties" "${sports[i]}" "${mports[i]}"
			echo "127.0.0.1:${sports[i]}" >"$nd/sasl_ssl_address"
			echo "127.0.0.1:${mports[i]}" >"$nd/mtls_address"
			sasl_ssl_brokers+="${sasl_ssl_brokers:+,}127.0.0.1:${sports[i]}"
			mtls_brokers+="${mtls_brokers:+,}127.0.0.1:${mports[i]}"
		fi
		java -Xmx256m -Dlog4j2.configurationFile="$here/log4j2.properties" -cp "$classpath" \
			kafka.tools.StorageTool format --ignore-formatted -t "$cluster_id" -c "$nd/server.properties" \
			"${format_args[@]}" >"$nd/format.log" 2>&1 || { cat "$nd/format.log" >&2; die "format storage of $name node $i failed"; }
		# start.sh (re)starts the node in the background and records its
		# pid; the fault tests call it after a kill -9.
		cat >"$nd/start.sh" <<EOF
#!/usr/bin/env bash
# Starts $name node $i of the test-kafka run in the background.
cd "$nd"
java -Xms128m -Xmx$heap -XX:+UseSerialGC -Djava.awt.headless=true \\
	-Dlog4j2.configurationFile="$here/log4j2.properties" \\
	-cp "$classpath" kafka.Kafka "$nd/server.properties" >>"$nd/node.log" 2>&1 </dev/null &
echo \$! >"$nd/pid"
EOF
		chmod +x "$nd/start.sh"
	done
	for ((i = 1; i <= n; i++)); do bash "$dir/node$i/start.sh"; done
	for ((i = 1; i <= n; i++)); do wait_node "$dir/node$i"; done
	wait_replicas "$name" "$n"
	log "$name: $n node(s) up at $brokers (Kafka $kafka_version)${security:+; SASL_SSL at $sasl_ssl_brokers, mutual TLS at $mtls_brokers}"
}

# wait_node waits until the node's log says the server started.
wait_node() {
	local nd=$1
	for _ in $(seq 1 1200); do
		if ! kill -0 "$(<"$nd/pid")" 2>/dev/null; then
			tail -n 30 "$nd/node.log" >&2
			die "$nd: the broker exited (last lines of its node.log above)"
		fi
		grep -q 'Kafka Server started' "$nd/node.log" 2>/dev/null && return 0
		sleep 0.1
	done
	die "$nd: not started after 120 s"
}

# wait_replicas waits until a topic with replication factor n can be
# created: every broker registered with the controller quorum.
wait_replicas() {
	local name=$1 n=$2
	for _ in $(seq 1 30); do
		if java -Xmx128m -Dlog4j2.configurationFile="$here/log4j2.properties" -cp "$classpath" \
			org.apache.kafka.tools.TopicCommand --bootstrap-server "$brokers" --create --if-not-exists \
			--topic test-kafka-ready --partitions 1 --replication-factor "$n" >"$work/$name/ready.log" 2>&1; then
			return 0
		fi
		sleep 1
	done
	cat "$work/$name/ready.log" >&2
	die "$name: no topic with replication factor $n after 30 tries"
}

# gotest runs go test in a module. A failing package does not stop the
# run: every suite runs, and the script fails at the end naming them.
failed=()
gotest() {
	local mod=$1
	shift
	log "go test $mod $*"
	# shellcheck disable=SC2086
	if ! (cd "$root/$mod" && go test $go_test_flags -count=1 "$@"); then
		failed+=("$mod: go test $*")
	fi
}

# --- suites ----------------------------------------------------------------

started=$SECONDS
if [[ " $suites " == *" smoke "* ]]; then
	# Only start and stop both clusters: a check of this script.
	make_pki
	start_cluster single 1 sasl_ssl
	stop_nodes "$work/single"
	start_cluster cluster 3
	stop_nodes "$work/cluster"
fi
if [[ " $suites " == *" up "* || " $suites " == *" up1 "* ]]; then
	# Start both clusters (up1: the single broker) and keep them until
	# Ctrl-C: for running single tests by hand with the environment this
	# prints.
	make_pki
	start_cluster single 1 sasl_ssl
	single=$brokers
	export_security_env
	printf 'export AUDITPIPE_TEST_KAFKA_BROKERS=%s   # single broker\n' "$single"
	env | grep '^AUDITPIPE_TEST_KAFKA_[A-Z_]*=' | grep -v _BROKERS= | sed 's/^/export /; s/$/   # single broker, secure listeners/'
	unset_security_env
	if [[ " $suites " == *" up "* ]]; then
		start_cluster cluster 3
		printf 'export AUDITPIPE_TEST_KAFKA_BROKERS=%s AUDITPIPE_FAULT_CLUSTER_DIR=%s   # 3-node cluster\n' "$brokers" "$work/cluster"
	fi
	log "running until Ctrl-C"
	while :; do
		sleep 3600 &
		sleep_pid=$!
		wait $sleep_pid
	done
fi
if [[ " $suites " == *" single "* ]]; then
	t0=$SECONDS
	make_pki
	start_cluster single 1 sasl_ssl
	export AUDITPIPE_TEST_KAFKA_BROKERS=$brokers
	export_security_env
	gotest internal -timeout 15m ./kafka/...
	gotest producer -timeout 10m ./webhook/...
	gotest deploy/local -timeout 10m ./allinone/...
	# Consumer replicas added and removed under load (1 -> 3 -> 2), a CLS
	# outage and a missing CLS topic; the processor's policy hot reload
	# under load, and its exactly-once mode killed -9 twice (~25-35 s).
	gotest consumer -timeout 10m ./group/...
	gotest processor -timeout 10m ./app/... ./cmd/processor/
	unset AUDITPIPE_TEST_KAFKA_BROKERS
	unset_security_env
	stop_nodes "$work/single"
	log "single broker suite done in $((SECONDS - t0)) s"
fi

if [[ " $suites " == *" faults "* ]]; then
	t0=$SECONDS
	start_cluster cluster 3
	export AUDITPIPE_TEST_KAFKA_BROKERS=$brokers
	export AUDITPIPE_FAULT_CLUSTER_DIR=$work/cluster
	skip=()
	if [[ -n $known_failures ]]; then
		log "SKIPPING known failures (bug not fixed yet, see the top of this script): $known_failures"
		skip=(-skip "^($known_failures)\$")
	fi
	gotest deploy/local -v -timeout 20m "${skip[@]}" ./faults/
	unset AUDITPIPE_TEST_KAFKA_BROKERS AUDITPIPE_FAULT_CLUSTER_DIR
	stop_nodes "$work/cluster"
	log "3-node fault suite done in $((SECONDS - t0)) s"
fi
if [[ " $suites " == *" fleet "* ]]; then
	# A cluster of its own: the fault tests leave killed-and-restarted
	# nodes and their topics behind.
	# Every stage connects through the SASL_SSL listener (SCRAM-SHA-512,
	# the test CA); the PLAINTEXT one is the brokers' own.
	t0=$SECONDS
	make_pki
	start_cluster fleet 3 sasl_ssl
	export AUDITPIPE_TEST_KAFKA_BROKERS=$brokers AUDITPIPE_FLEET=1
	export_security_env
	gotest deploy/local -v -timeout 10m ./fleet/
	unset AUDITPIPE_TEST_KAFKA_BROKERS AUDITPIPE_FLEET
	unset_security_env
	stop_nodes "$work/fleet"
	log "fleet suite done in $((SECONDS - t0)) s"
fi
if [[ ${#failed[@]} -gt 0 ]]; then
	printf 'test-kafka: FAILED after %d s:\n' "$((SECONDS - started))" >&2
	printf '  %s\n' "${failed[@]}" >&2
	exit 1
fi
log "all passed in $((SECONDS - started)) s"
