package HESoak;

# HESoak - small helpers shared by bench/soak, bench/flood and
# fuzz/valgrind: the built module, Starman with bench/soak.psgi,
# per-process RSS, PostgreSQL and Redis figures, probers.  The servers
# themselves come from t/lib/HETest/Servers.pm (PostgreSQL with
# log_connections=on, Redis, Starman), on free ports of 127.0.0.1 (as
# nobody when started by root) and stopped at exit; scripts that use
# HESoak find it in @INC.

use strict;
use warnings;

use Cwd qw(abs_path);
use Exporter qw(import);
use File::Basename qw(dirname);
use HTTP::Tiny;
use POSIX ();
use Time::HiRes qw(sleep time);

our $ROOT;
BEGIN { $ROOT = abs_path(dirname(__FILE__) . '/../..') }
use lib "$ROOT/t/lib";
use HETest::Proc qw(scratch_dir fork_server unwatch);
use HETest::Servers ();
use HEBench qw(percentile);

our @EXPORT_OK = qw(
    root blib start_starman rss_kb http_get pg_sql pg_auth_count
    redis_info say_figure start_prober stop_prober
);

sub root { $ROOT }

# The blib dir of a fresh build (bench/build-module), or $ENV{HE_BLIB}.
my $BLIB;
sub blib {
    return $BLIB //= $ENV{HE_BLIB} // do {
        my $b = `"$ROOT/bench/build-module"`;
        chomp $b;
        die "bench: building the module failed\n" if $? || !-d $b;
        $b;
    };
}

sub say_figure { printf "  %-42s %s\n", "$_[0]:", $_[1] }

# Starman on bench/soak.psgi with the built module; %env configures the
# app (HEB_*); max_requests recycles each worker after that many requests.
# Ready when ping answers and every worker is up.  It runs
# as the invoking user, as it always has: the app appends to a HEB_LOG
# file in our own scratch dir.  A HETest::Servers::Starman: $s->port,
# $s->worker_pids, $s->log, $s->stop (or at exit).
sub start_starman {
    my (%o) = @_;
    my $workers = $o{workers} // 4;
    my $blib = blib();
    return HETest::Servers::start_starman(
        app => "$ROOT/bench/soak.psgi", workers => $workers,
        inc => [ "$blib/lib", "$blib/arch" ],
        args => [ '--preload-app', '--max-requests',
                  $o{max_requests} // 1_000_000_000 ],
        dir => $o{dir} // scratch_dir('starman'), env => $o{env},
        as_user => 0, ready_timeout => 30,
        ready => sub {
            my ($s) = @_;
            my $r = http_get($s->port, '/healthz/ping');
            return $r->{status} == 200 && $r->{content} eq 'pong'
                && $s->worker_pids == $workers;
        },
    );
}

sub rss_kb {
    my ($pid) = @_;
    open my $fh, '<', "/proc/$pid/status" or return undef;
    while (my $l = <$fh>) { return $1 if $l =~ /^VmRSS:\s+(\d+) kB/ }
    return undef;
}

sub http_get {
    my ($port, $path) = @_;
    return HTTP::Tiny->new(timeout => 5)
        ->get("http://127.0.0.1:$port$path");
}

# One SQL query as PostgreSQL's superuser; the rows as "a|b" lines.
sub pg_sql {
    my ($pg, $sql) = @_;
    local $ENV{PGPASSWORD} = $pg->superpassword;
    my $psql = $pg->{psql};
    my $out = `$psql -X -At -h 127.0.0.1 -p $pg->{port} -U postgres -d postgres -c "$sql" 2>&1`;
    die "psql: $out" if $?;
    chomp $out;
    return $out;
}

# "connection authorized" lines for the test user in the server log.
sub pg_auth_count {
    my ($pg) = @_;
    open my $fh, '<', $pg->log or return 0;
    my $user = $pg->user;
    return scalar grep { /connection authorized: user=\Q$user\E / } <$fh>;
}

# INFO fields of a Redis server (hash), through redis-cli.
sub redis_info {
    my ($redis) = @_;
    my @auth = $redis->password ? ('-a', $redis->password, '--no-auth-warning')
                                : ();
    my $txt = `redis-cli -h $redis->{host} -p $redis->{port} @auth INFO 2>&1`;
    die "redis-cli: $txt" if $?;
    return { map { /^(\w+):(.*?)\r?$/ ? ($1 => $2) : () } split /\n/, $txt };
}

# A child that GETs $path on a new connection every $interval s and keeps
# the latencies; stop_prober returns { n, fails, p50, p99, max } in ms.
sub start_prober {
    my ($port, $path, $interval) = @_;
    my $file = scratch_dir('prober') . '/latencies';
    my $pid = fork_server();
    if ($pid == 0) {
        my $stop = 0;
        $SIG{TERM} = sub { $stop = 1 };
        open my $out, '>', $file or POSIX::_exit(1);
        my $http = HTTP::Tiny->new(timeout => 5, keep_alive => 0);
        until ($stop) {
            my $t = time;
            my $r = $http->get("http://127.0.0.1:$port$path");
            printf {$out} "%.3f %d\n", (time - $t) * 1000, $r->{status};
            sleep $interval;
        }
        close $out;
        POSIX::_exit(0);
    }
    return { pid => $pid, file => $file };
}

sub stop_prober {
    my ($p) = @_;
    kill 'TERM', $p->{pid};
    waitpid $p->{pid}, 0;
    unwatch($p->{pid});
    open my $fh, '<', $p->{file} or die "$p->{file}: $!";
    my (@ms, $fails);
    while (my $l = <$fh>) {
        my ($ms, $status) = split ' ', $l;
        push @ms, $ms;
        $fails++ if $status != 200;
    }
    return { n => scalar @ms, fails => $fails // 0,
             p50 => percentile(50, @ms) // 0, p99 => percentile(99, @ms) // 0,
             max => percentile(100, @ms) // 0 };
}

1;
