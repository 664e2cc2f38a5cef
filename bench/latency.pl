#!/usr/bin/perl
# bench/latency.pl - latency of the status endpoint against a real
# PostgreSQL and a real Redis (stage 3 of bench/run, which starts the
# servers and passes them in HEBENCH_PG_* / HEBENCH_REDIS).
#
#   HEBENCH_PG_HOST=127.0.0.1 HEBENCH_PG_PORT=5432 HEBENCH_PG_DBNAME=db \
#   HEBENCH_PG_USER=u HEBENCH_PG_PASSWORD=pw HEBENCH_REDIS=127.0.0.1:6379 \
#   HEBENCH_FLOOR=/path/to/floor perl -Mblib bench/latency.pl [-n 300] [--blocks 6]
#
# Series, each -n samples, taken in --blocks interleaved blocks (rotating
# order) so that all of them see the same machine and servers:
#   floor.pg, floor.redis  bench/floor.c: libpq connect+SELECT 1+close,
#                          hiredis connect+PING+close (blocking C, no threads)
#   ours                   GET /healthz/status through our XSUB, cache_seconds
#                          0: both checks, at the same time, in the checker's
#                          child processes
#   perl                   the same request through bench/PurePerlWrapper.pm:
#                          DBI/DBD::Pg connect+SELECT 1+disconnect, then
#                          Redis.pm connect+PING+QUIT
#   perl.dbi, perl.redis   those two Perl checks timed on their own
# Every sample is wall-clock time around one call, in microseconds.
use strict;
use warnings;

use FindBin ();
use lib "$FindBin::Bin", "$FindBin::Bin/lib";

use Getopt::Long qw(GetOptions);
use HEBench qw(percentile result now_us);
use POSIX ();
use Time::HiRes ();
use PurePerlWrapper;
use RT::Extension::HealthEndpoint;

GetOptions('n=i' => \(my $N = 300), 'blocks=i' => \(my $BLOCKS = 6))
    or die "usage: $0 [-n SAMPLES] [--blocks B]\n";
my $per = int(($N + $BLOCKS - 1) / $BLOCKS);

my %pg = map { $_ => $ENV{"HEBENCH_PG_\U$_"} // die "HEBENCH_PG_\U$_ is not set\n" }
    qw(host port dbname user password);
my $redis = $ENV{HEBENCH_REDIS} // die "HEBENCH_REDIS is not set\n";
my $floor = $ENV{HEBENCH_FLOOR} // die "HEBENCH_FLOOR is not set\n";
my ($rhost, $rport) = $redis =~ /^(.+):(\d+)$/ or die "HEBENCH_REDIS: host:port\n";

my $app = sub { [200, ['Content-Type' => 'text/plain'], ['app']] };
my @logged;
my %opt = (
    ping_path => '/healthz/ping', status_path => '/healthz/status',
    timeout => 2, cache_seconds => 0,
    db => { type => 'Pg', host => $pg{host}, port => $pg{port},
            name => $pg{dbname}, user => $pg{user}, password => $pg{password} },
    redis => { server => $redis },
    logger => sub { push @logged, "[$_[0]] $_[1]" },
);
my $ours = RT::Extension::HealthEndpoint->wrap($app, %opt);
my $pp   = PurePerlWrapper->wrap($app, %opt);
my $env = { REQUEST_METHOD => 'GET', PATH_INFO => '/healthz/status',
            SCRIPT_NAME => '', QUERY_STRING => '', SERVER_NAME => '127.0.0.1',
            SERVER_PORT => 80, REMOTE_ADDR => '127.0.0.1',
            SERVER_PROTOCOL => 'HTTP/1.1', 'psgi.url_scheme' => 'http' };

# The Perl checks on their own, exactly as the pure-Perl wrapper does them.
my $dbi_check   = PurePerlWrapper::_db_check($opt{db}, 2);
my $redis_check = PurePerlWrapper::_redis_check($opt{redis}, 2);

my $want = '{"checks":{"database":"ok","redis":"ok"},"status":"ok"}';
for ([ours => $ours], [perl => $pp]) {
    my ($name, $h) = @$_;
    my $r = $h->($env);
    die "$name status answered $r->[0] $r->[2][0] (expected 200 $want)\n"
        . join("\n", @logged) . "\n"
        unless $r->[0] == 200 && $r->[2][0] eq $want;
}
for ([dbi => $dbi_check], [redis => $redis_check]) {
    my $err = $_->[1]->();
    die "perl $_->[0] check failed: $err\n" if defined $err;
}

my @floor_cmd = ($floor, '--pg-host', $pg{host}, '--pg-port', $pg{port},
                 '--pg-dbname', $pg{dbname}, '--pg-user', $pg{user},
                 '--pg-password', $pg{password}, '--redis-host', $rhost,
                 '--redis-port', $rport, '--raw');

my %s;                                  # series => [microseconds...]
my %cpu;                                # series => [CPU seconds, calls]
sub cpu_now { Time::HiRes::clock_gettime(Time::HiRes::CLOCK_PROCESS_CPUTIME_ID()) }
# CPU seconds of the checker, its live check processes and the ones it
# reaped (/proc: utime, stime, cutime, cstime in clock ticks).
my $HZ = POSIX::sysconf(POSIX::_SC_CLK_TCK()) || 100;
sub proc_ticks {
    my ($pid, $reaped) = @_;
    open my $fh, '<', "/proc/$pid/stat" or return 0;
    my $line = <$fh> // return 0;
    my @f = split ' ', substr($line, rindex($line, ')') + 2);
    return $f[11] + $f[12] + ($reaped ? $f[13] + $f[14] : 0);
}
sub checker_cpu {
    my $pid = RT::Extension::HealthEndpoint::_shared_info($ours)->{checker_pid}
        or return 0;
    my $ticks = proc_ticks($pid, 1);
    opendir my $d, '/proc' or return $ticks / $HZ;
    for my $k (grep { /^\d+$/ } readdir $d) {
        open my $fh, '<', "/proc/$k/stat" or next;
        my $line = <$fh> // next;
        my ($ppid) = substr($line, rindex($line, ')') + 2) =~ /^\S+ (\d+)/;
        $ticks += proc_ticks($k, 0) if $ppid && $ppid == $pid;
    }
    return $ticks / $HZ;
}
sub children_cpu { my @t = times; $t[2] + $t[3] }
my %series = (
    floor => sub {
        my $c0 = children_cpu();
        open my $fh, '-|', @floor_cmd, '-n', $per, '--warmup', 0
            or die "floor: $!\n";
        while (<$fh>) {
            my ($k, $v) = /^(pg|redis) ([\d.]+)$/ or next;
            push @{ $s{"floor.$k"} }, $v;
        }
        close $fh or die "floor failed (exit $?): see its messages above\n";
        $cpu{floor}[0] += children_cpu() - $c0;
        $cpu{floor}[1] += $per;
    },
    ours => sub {
        # this process (the reader) plus the checker and its children
        my $c0 = cpu_now() + checker_cpu();
        for (1 .. $per) {
            my $t = now_us();
            my $r = $ours->($env);
            push @{ $s{ours} }, now_us() - $t;
            die "ours: status $r->[0]\n@logged\n" unless $r->[0] == 200;
        }
        $cpu{ours}[0] += cpu_now() + checker_cpu() - $c0;
        $cpu{ours}[1] += $per;
    },
    perl => sub {
        my $c0 = cpu_now();
        for (1 .. $per) {
            my $t = now_us();
            my $r = $pp->($env);
            push @{ $s{perl} }, now_us() - $t;
            die "perl: status $r->[0]\n@logged\n" unless $r->[0] == 200;
        }
        $cpu{perl}[0] += cpu_now() - $c0;
        $cpu{perl}[1] += $per;
    },
    perl_parts => sub {
        for (1 .. $per) {
            my $t = now_us();
            my $e = $dbi_check->();
            my $t2 = now_us();
            $e //= $redis_check->();
            my $t3 = now_us();
            die "perl check: $e\n" if defined $e;
            push @{ $s{'perl.dbi'} }, $t2 - $t;
            push @{ $s{'perl.redis'} }, $t3 - $t2;
        }
    },
);

# warm-up: connections, page cache, the threads' stacks, DBI's drivers
$ours->($env), $pp->($env) for 1 .. 5;
{ open my $null, '-|', @floor_cmd, '-n', 5 or die "floor: $!\n"; 1 while <$null>;
  close $null or die "floor failed (exit $?)\n"; }

my @order = qw(floor ours perl perl_parts);
for my $b (0 .. $BLOCKS - 1) {
    $series{ $order[($_ + $b) % @order] }->() for 0 .. $#order;
}

printf "  %-12s %6s %10s %10s %10s %10s\n", 'series', 'n', 'p50 ms', 'p99 ms',
    'min ms', 'max ms';
for my $k (qw(floor.pg floor.redis ours perl perl.dbi perl.redis)) {
    my @v = @{ $s{$k} || [] } or next;
    my ($p50, $p99) = (percentile(50, @v), percentile(99, @v));
    printf "  %-12s %6d %10.3f %10.3f %10.3f %10.3f\n", $k, scalar @v,
        $p50 / 1000, $p99 / 1000, percentile(0, @v) / 1000,
        percentile(100, @v) / 1000;
    result("latency.$k.p50_us", sprintf '%.1f', $p50);
    result("latency.$k.p99_us", sprintf '%.1f', $p99);
}
# Client CPU time per status answer (floor: per pg+redis pair), which
# depends much less than latency on what else the machine is doing.
print "  client CPU per status answer (floor: one pg + one redis check):\n";
for my $k (qw(floor ours perl)) {
    my ($c, $n) = @{ $cpu{$k} || [0, 0] } or next;
    next unless $n;
    printf "    %-6s %8.3f ms\n", $k, $c / $n * 1000;
    result("latency.$k.cpu_us", sprintf '%.1f', $c / $n * 1e6);
}
print "  (logged during the run: $_)\n" for @logged;
