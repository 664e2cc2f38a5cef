#!/usr/bin/perl
# bench/http.pl - the module over HTTP: wrk against Starman on 127.0.0.1
# (stage 2 of bench/run; with --callgrind, stage 2b).
#
#   perl bench/http.pl --inc BLIB/lib --inc BLIB/arch [--rounds 16]
#       [--seconds 1] [--workers 2] [--connections 8] [--pureperl]
#   perl bench/http.pl --inc ... --callgrind --cgdir DIR
#
# Starman servers with the same worker count run side by side (as nobody
# when we are root): bench/bare.psgi twice, and bench/ours.psgi (the same
# app wrapped by RT::Extension::HealthEndpoint).  Cases:
#   bare   GET /healthz/ping  on bare.psgi (the app answers every path)
#   bare2  GET /healthz/ping  on the second bare.psgi (A/A control)
#   pt     GET /healthy/pong on ours.psgi: not our path (outside /healthz;
#          the length of /healthz/ping, so the bare app parses the same bytes)
#   ping   GET /healthz/ping  on ours.psgi: answered by the module
# and with --pureperl also pp_pt / pp_ping on bench/pureperl.psgi.  The
# request lines have the same length and the answers the same headers
# (bare.psgi answers like the ping): Starman's own cost depends on both
# (about 9000 instructions for 13 more bytes of path, 10000 for one more
# header), and the comparison is about the wrapper.
#
# Requests per second: each round runs every case once (wrk -t1
# -c<connections> -d<seconds>), the order rotating from round to round,
# only one server loaded at a time.  Many short rounds: each round's ratio
# compares runs seconds apart, and the median over the rounds shrugs off
# the rounds that a neighbour's burst of CPU use disturbed.  Also
# reported: the ratio of the best rounds, and the server CPU time per
# request (user+system of the Starman process group, from /proc).
#
# --callgrind: the same servers with one worker each, under valgrind's
# callgrind (as the invoking user, see below).  Per case the worker's
# counters are zeroed, wrk -c1 runs, the counters are dumped, twice (1 s
# and 1 + --seconds s, default 2): the difference per extra request is the
# user-space instructions per request in the server, independent of the
# machine's load.  Needs valgrind with callgrind_control.
use strict;
use warnings;

use FindBin ();
use lib "$FindBin::Bin/lib";

use Getopt::Long qw(GetOptions);
use HEBench qw(result median percentile wrk group_cpu);
use HETest::Servers qw(start_starman);

GetOptions(
    'inc=s@' => \(my $INC = []), 'rounds=i' => \(my $ROUNDS = 16),
    'seconds=i' => \(my $SECONDS), 'workers=i' => \(my $WORKERS = 2),
    'connections=i' => \(my $CONN = 8), 'pureperl!' => \(my $PUREPERL = 0),
    'logdir=s' => \(my $LOGDIR = '/tmp'), 'callgrind' => \(my $CALLGRIND = 0),
    'cgdir=s' => \(my $CGDIR),
) or die "usage: $0 --inc DIR... [--rounds N] [--seconds S] [--workers W]"
    . " [--connections C] [--pureperl] [--callgrind --cgdir DIR]\n";
$SECONDS //= $CALLGRIND ? 2 : 1;

system('wrk --version >/dev/null 2>&1') == 0 || $? >> 8 == 1
    or die "wrk not found\n";

# The servers are stopped at exit (HETest::Proc), also on a signal.
my %server;
my @names = ('bare', ($CALLGRIND ? () : 'bare2'), 'ours',
             ($PUREPERL ? 'pureperl' : ()));
my @valgrind;
if ($CALLGRIND) {
    defined $CGDIR or die "--callgrind needs --cgdir\n";
    mkdir $CGDIR;
    chmod 01777, $CGDIR;                # the servers may run as nobody
    @valgrind = ('valgrind', '--tool=callgrind', '--trace-children=yes',
                 "--callgrind-out-file=$CGDIR/cg.%p");
    $WORKERS = 1;
}
for my $name (@names) {
    $server{$name} = start_starman(
        name => "starman for $name.psgi",
        prefix => \@valgrind, inc => $INC, workers => $WORKERS,
        args => [ '--max-requests', 1_000_000_000 ],
        app => "$FindBin::Bin/" . ($name eq 'bare2' ? 'bare' : $name) . '.psgi',
        log => "$LOGDIR/starman-$name" . ($CALLGRIND ? '-cg' : '') . '.log',
        # Under callgrind also the same hash seed for every server, so
        # that no server walks its hashes in a luckier order than another
        # (instance-to-instance spread drops from ~0.5% to ~0.1%).
        env => { PLACK_ENV => 'deployment',
                 ($CALLGRIND ? (PERL_HASH_SEED => 0, PERL_PERTURB_KEYS => 0) : ()) },
        # Under valgrind the servers keep our user: Starman (Net::Server)
        # calls setgid() after it starts, which makes a process that
        # dropped root undumpable, and then valgrind's gdbserver, which
        # callgrind_control talks to, cannot reach the idle worker.
        as_user => $CALLGRIND ? 0 : 1,
        ready_timeout => $CALLGRIND ? 120 : 30,
    );
}

sub url { "http://127.0.0.1:$server{$_[0]}{port}$_[1]" }
my @cases = (
    [bare  => 'bare',  url(bare => '/healthz/ping')],
    ($CALLGRIND ? () : [bare2 => 'bare2', url(bare2 => '/healthz/ping')]),
    [pt    => 'ours',  url(ours => '/healthy/pong')],
    [ping  => 'ours',  url(ours => '/healthz/ping')],
    ($PUREPERL ? (
        [pp_pt   => 'pureperl', url(pureperl => '/healthy/pong')],
        [pp_ping => 'pureperl', url(pureperl => '/healthz/ping')],
    ) : ()),
);

# check the answers once, and warm the workers up
for my $c (@cases) {
    my $r = wrk(url => $c->[2], seconds => 1, connections => $CALLGRIND ? 1 : $CONN);
    die "$c->[0]: $r->{errors} errors or non-2xx answers\n$r->{raw}" if $r->{errors};
}

# callgrind_control exits 0 even when it fails: read what it says.
sub cg_control {
    my ($op, $pid) = @_;
    my @cmd = ('callgrind_control', $op, $pid);
    $pid =~ /^\d+$/ or die "bad pid $pid\n";
    open my $fh, '-|', "callgrind_control $op $pid 2>&1"
        or die "callgrind_control: $!\n";
    my $out = do { local $/; <$fh> } // '';
    close $fh;
    die "@cmd failed:\n$out" unless $out =~ /\bOK\b/;
}

if ($CALLGRIND) {
    my %ir;
    # One wrk run also pays for its connection (accept, keep-alive set-up,
    # the last request's close): about 800000 instructions, 0.3% of a
    # 1-second run.  So two runs per case, 1 and 1+--seconds seconds, and
    # the cost per request is the slope between them.
    my $measure = sub {
        my ($worker, $url, $seconds) = @_;
        cg_control('-z', $worker);
        my $r = wrk(url => $url, seconds => $seconds, connections => 1);
        cg_control('-d', $worker);
        my ($dump) = sort { -M $a <=> -M $b } glob "$CGDIR/cg.$worker.*";
        open my $fh, '<', $dump or die "no callgrind dump for $worker\n";
        my ($sum) = map { /^summary:\s*(\d+)/ ? $1 : () } <$fh>;
        die "no requests or no instructions counted\n" unless $r->{requests} && $sum;
        unlink $dump;
        return ($sum, $r->{requests});
    };
    for my $c (@cases) {
        my ($name, $srv, $url) = @$c;
        my $master = $server{$srv}{pid};
        chomp(my $worker = `pgrep -P $master | head -n 1`);
        $worker =~ /^\d+$/ or die "no Starman worker under $master\n";
        my ($s1, $n1) = $measure->($worker, $url, 1);
        my ($s2, $n2) = $measure->($worker, $url, 1 + $SECONDS);
        die "$name: too few requests\n" unless $n2 > $n1;
        $ir{$name} = ($s2 - $s1) / ($n2 - $n1);
        printf "  %-8s %9.0f instructions per request in the worker (%d and %d requests)\n",
            $name, $ir{$name}, $n1, $n2;
        result("http_ir.$name", sprintf '%.0f', $ir{$name});
    }
    for my $k (grep { $_ ne 'bare' } map { $_->[0] } @cases) {
        result("http_ir.${k}_vs_bare", sprintf '%.4f', $ir{bare} / $ir{$k});
    }
    exit 0;
}

my (%rps, %cpu_us);
for my $round (0 .. $ROUNDS - 1) {
    for my $i (0 .. $#cases) {
        my ($name, $srv, $url) = @{ $cases[($i + $round) % @cases] };
        my $pgid = $server{$srv}{pid};
        my $cpu0 = group_cpu($pgid);
        my $r = wrk(url => $url, seconds => $SECONDS, connections => $CONN);
        my $cpu = group_cpu($pgid) - $cpu0;
        die "$name: $r->{errors} errors or non-2xx answers\n$r->{raw}" if $r->{errors};
        push @{ $rps{$name} }, $r->{rps};
        push @{ $cpu_us{$name} }, $cpu / $r->{requests} * 1e6 if $r->{requests};
    }
}

printf "  wrk -t1 -c%d -d%ss, Starman --workers %d, %d rounds\n", $CONN,
    $SECONDS, $WORKERS, $ROUNDS;
printf "  %-8s %10s %10s %12s   %s\n", 'case', 'best r/s', 'median',
    'server CPU', 'rounds (r/s)';
my (%best, %cpu);
for my $c (@cases) {
    my $name = $c->[0];
    my @v = @{ $rps{$name} };
    ($best{$name}) = sort { $b <=> $a } @v;
    $cpu{$name} = median(@{ $cpu_us{$name} });
    printf "  %-8s %10.0f %10.0f %9.1f us   %s\n", $name, $best{$name},
        median(@v), $cpu{$name}, join ' ', map { sprintf '%.0f', $_ } @v;
    result("http.$name.rps", sprintf '%.0f', $best{$name});
    result("http.$name.median_rps", sprintf '%.0f', median(@v));
    result("http.$name.cpu_us", sprintf '%.1f', $cpu{$name});
}
print "  (server CPU: user+system time of the Starman processes per request,\n"
    . "   median of the rounds; the capacity ratio is its inverse ratio)\n";

# Ratios to the bare app.  Primary: the median over the rounds of each
# round's ratio.  bare2 is a second, identical bare server: its ratio
# shows the noise of the method itself (1.000 on a quiet machine).
for my $k (grep { $_ ne 'bare' } map { $_->[0] } @cases) {
    my @r = sort { $a <=> $b } map { $rps{$k}[$_] / $rps{bare}[$_] } 0 .. $ROUNDS - 1;
    result("http.${k}_vs_bare", sprintf '%.4f', median(@r));
    result("http.${k}_vs_bare_best", sprintf '%.4f', $best{$k} / $best{bare});
    result("http.${k}_vs_bare_cpu", sprintf '%.4f', $cpu{bare} / $cpu{$k});
    result("http.${k}_vs_bare_iqr", sprintf '%.4f-%.4f',
        percentile(25, @r), percentile(75, @r));
    printf "  %-8s / bare: median of rounds %.3f (quartiles %.3f-%.3f), best rounds %.3f, CPU %.3f\n",
        $k, median(@r), percentile(25, @r), percentile(75, @r),
        $best{$k} / $best{bare}, $cpu{bare} / $cpu{$k};
}
