#!/usr/bin/perl
# bench/inproc.pl - in-process cost of RT::Extension::HealthEndpoint, with
# Perl's Benchmark module (stage 1 of bench/run; runs alone as well).
#
#   perl -Mblib bench/inproc.pl [--rounds 40] [--ms 25]
#
# Five cases, the same two PSGI env hashes for all of them:
#   direct     the trivial app called directly              (GET /Ticket/...)
#   ours_pt    the same request through our XSUB (pass-through)
#   pp_pt      the same request through bench/PurePerlWrapper.pm
#   ours_ping  GET /healthz/ping answered by our XSUB
#   pp_ping    GET /healthz/ping answered by the pure-Perl wrapper
#   ours_status GET /healthz/status answered from a fresh shared result
#              (what a status probe costs a worker between two runs)
# Each case runs --rounds times for about --ms milliseconds of wall-clock
# time (Benchmark::timeit with :hireswallclock, the empty loop subtracted),
# the cases interleaved round by round so that a busy moment of the
# machine hits all of them alike.  The time per call of a case is its best
# round (the least disturbed one); the median is shown too.  Wall-clock
# rather than CPU time: times() ticks at 10 ms, far too coarse for rounds
# this short, and short rounds are what survives a busy machine.
use strict;
use warnings;

use FindBin ();
use lib "$FindBin::Bin", "$FindBin::Bin/lib";

use Benchmark qw(:hireswallclock timeit cmpthese);
use Getopt::Long qw(GetOptions);
use HEBench qw(result median);
use PurePerlWrapper;
use RT::Extension::HealthEndpoint;

GetOptions('rounds=i' => \(my $ROUNDS = 40), 'ms=f' => \(my $MS = 25),
           'loop=s' => \(my $LOOP), 'n=i' => \(my $LOOP_N = 20000))
    or die "usage: $0 [--rounds N] [--ms MILLISECONDS] | --loop CASE [--n N]\n";

# Package variables: Benchmark compiles string code in package main, where
# lexicals of this file are not visible.  String code is used because a
# code ref would add a sub call of its own to every iteration.
our $APP = sub {                        # as bench/bare.psgi
    return [200, ['Content-Type' => 'text/plain', 'Content-Length' => 5,
                  'Cache-Control' => 'no-store'],
            ['hello']];
};
my %paths = (ping_path => '/healthz/ping', status_path => '/healthz/status',
             timeout => 2, cache_seconds => 0);
our $OURS = RT::Extension::HealthEndpoint->wrap($APP, %paths);
our $PP   = PurePerlWrapper->wrap($APP, %paths);
# a result an hour fresh: every call reads it, none waits or asks for a run
our $OURS_STATUS = RT::Extension::HealthEndpoint->wrap($APP, %paths,
    cache_seconds => 3600, logger => sub { });

my %common = (
    REQUEST_METHOD => 'GET', SERVER_PROTOCOL => 'HTTP/1.1',
    SCRIPT_NAME => '', QUERY_STRING => 'id=1', SERVER_NAME => '127.0.0.1',
    SERVER_PORT => 8080, REMOTE_ADDR => '127.0.0.1', REMOTE_PORT => 54321,
    HTTP_HOST => '127.0.0.1:8080', HTTP_USER_AGENT => 'bench',
    HTTP_ACCEPT => '*/*', 'psgi.version' => [1, 1],
    'psgi.url_scheme' => 'http', 'psgi.multithread' => '',
    'psgi.multiprocess' => 1, 'psgi.run_once' => '', 'psgi.nonblocking' => '',
    'psgi.streaming' => 1,
);
our $ENV_PT   = { %common, PATH_INFO => '/Ticket/Display.html',
                  REQUEST_URI => '/Ticket/Display.html?id=1' };
our $ENV_PING = { %common, PATH_INFO => '/healthz/ping', QUERY_STRING => '',
                  REQUEST_URI => '/healthz/ping' };
our $ENV_STATUS = { %$ENV_PING, PATH_INFO => '/healthz/status',
                    REQUEST_URI => '/healthz/status' };
$OURS_STATUS->($ENV_STATUS)->[0] == 200         # the first run, now
    or die "the status wrapper does not answer 200\n";
our $R;

# Same work on both sides, or the comparison means nothing: the two
# wrappers must answer alike (methods, paths, HEAD, 405), and the
# pass-through must hand back the app's own response.
sub flat { my $r = shift; join '|', $r->[0], @{ $r->[1] }, @{ $r->[2] } }
for my $m (qw(GET HEAD POST OPTIONS get)) {
    for my $p ('/healthz/ping', '/healthz/status', '/healthz/ping/', '/Ticket/Display.html') {
        my $e = { %$ENV_PT, REQUEST_METHOD => $m, PATH_INFO => $p };
        my ($o, $pp) = (flat($OURS->($e)), flat($PP->($e)));
        die "the wrappers answer $m $p differently:\n  ours $o\n  pp   $pp\n"
            unless $o eq $pp;
    }
}
die "pass-through changed the response\n"
    unless flat($OURS->($ENV_PT)) eq flat($APP->($ENV_PT));

my @cases = (
    [direct    => '$main::R = $main::APP->($main::ENV_PT)'],
    [ours_pt   => '$main::R = $main::OURS->($main::ENV_PT)'],
    [pp_pt     => '$main::R = $main::PP->($main::ENV_PT)'],
    [ours_ping => '$main::R = $main::OURS->($main::ENV_PING)'],
    [pp_ping   => '$main::R = $main::PP->($main::ENV_PING)'],
    [ours_status => '$main::R = $main::OURS_STATUS->($main::ENV_STATUS)'],
);

# --loop CASE: only run CASE's code --n times in the same kind of loop
# (for bench/run's instruction counts under callgrind); CASE 'none' is the
# empty loop.
if (defined $LOOP) {
    my ($code) = $LOOP eq 'none' ? ('') : map { $_->[1] } grep { $_->[0] eq $LOOP } @cases;
    die "unknown case $LOOP\n" unless defined $code;
    my $sub = eval "sub { for (1 .. $LOOP_N) { $code; } }" or die $@;
    $sub->();
    exit 0;
}

# Calibrate: one iteration count for every case, about --ms milliseconds
# of the slowest case.
my $N = 1000;
for my $c (@cases) {
    while (1) {
        my $t = timeit($N, $c->[1]);
        last if $t->real >= $MS / 1000 || $N > 1e8;
        $N *= 2;
    }
}

# The empty loop that timeit() subtracts: measured once, as its fastest of
# 25 runs, and handed to Benchmark's cache.  (Measured anew before every
# round it would add its own noise, and the fastest round would tend to be
# the one whose empty loop was slowed down.)
Benchmark::enablecache();
my $null;
for (1 .. 25) {
    my $t = NullLoop::run($N);
    $null = $t if !$null || $t->real < $null->real;
}
$null->[5] = 0;                                 # as timeit() does
$Benchmark::Cache{"${N}s"} = $null;
printf "  %d calls per round; empty loop %.1f ns per iteration\n",
    $N, $null->real / $N * 1e9;

# Measure: --rounds rounds; in each, every case once, in a rotating order.
# timeit() runs the code $n times in one compiled loop and subtracts an
# empty loop of the same count; with :hireswallclock the real time is
# Time::HiRes's.  A short round often runs without being preempted on a
# busy machine; the fastest round is the estimate of the undisturbed cost.
my (%ns, %best, %bestns);
for my $round (1 .. $ROUNDS) {
    my @order = map { $cases[($_ + $round) % @cases] } 0 .. $#cases;
    for my $c (@order) {
        my ($name, $code) = @$c;
        my $t = timeit($N, $code);
        next unless $t->real > 0;
        my $ns = $t->real / $N * 1e9;
        push @{ $ns{$name} }, $ns;
        if (!defined $bestns{$name} || $ns < $bestns{$name}) {
            ($best{$name}, $bestns{$name}) = ($t, $ns);
        }
    }
}

# cmpthese() computes rates from CPU time, which ticks at 10 ms; hand it
# the best rounds with their wall-clock time in the CPU field instead.
my %chart = map {
    my $t = $best{$_};
    ($_ => bless [$t->real, $t->real, 0, 0, 0, $t->iters], 'Benchmark');
} keys %best;
print "Benchmark's cmpthese() of the best rounds (rate = calls per second):\n";
cmpthese(\%chart);
print "\n";
printf "  %-10s %9s %9s   %s\n", 'case', 'best ns', 'median', "fastest rounds (ns per call)";
my %t;
for my $c (@cases) {
    my $name = $c->[0];
    $t{$name} = $bestns{$name};
    printf "  %-10s %9.1f %9.1f   %s\n", $name, $t{$name}, median(@{ $ns{$name} }),
        join(' ', map { sprintf '%.0f', $_ } grep { defined } (sort { $a <=> $b } @{ $ns{$name} })[0 .. 7]) . (@{ $ns{$name} } > 8 ? ' ...' : '');
    result("inproc.$name.ns", sprintf '%.1f', $t{$name});
    result("inproc.$name.median_ns", sprintf '%.1f', median(@{ $ns{$name} }));
}

my $ours_over = $t{ours_pt} - $t{direct};
my $pp_over   = $t{pp_pt} - $t{direct};
printf "\n  pass-through overhead: ours %.1f ns, pure Perl %.1f ns per request\n",
    $ours_over, $pp_over;
result('inproc.ours_overhead_ns', sprintf '%.1f', $ours_over);
result('inproc.pp_overhead_ns', sprintf '%.1f', $pp_over);
result('inproc.overhead_ratio',
       $pp_over > 0 ? sprintf('%.3f', $ours_over / $pp_over) : 'NA');
result('inproc.ping_speedup', sprintf '%.3f', $t{pp_ping} / $t{ours_ping});
result('inproc.status_vs_ping', sprintf '%.3f', $t{ours_status} / $t{ours_ping});

# The same ratios per round (each round's cases ran back to back), to show
# how stable they are.
my @rr = map {
    my $i = $_;
    my $d = $ns{pp_pt}[$i] - $ns{direct}[$i];
    $d > 0 ? ($ns{ours_pt}[$i] - $ns{direct}[$i]) / $d : ();
} 0 .. $#{ $ns{direct} };
my @pr = map { $ns{pp_ping}[$_] / $ns{ours_ping}[$_] } 0 .. $#{ $ns{pp_ping} };
printf "  per-round overhead ratio: %s\n", join ' ', map { sprintf '%.2f', $_ } @rr;
printf "  per-round ping speed-up:  %s\n", join ' ', map { sprintf '%.2f', $_ } @pr;
result('inproc.overhead_ratio_median_of_rounds', @rr ? sprintf('%.3f', median(@rr)) : 'NA');
result('inproc.ping_speedup_median_of_rounds', sprintf '%.3f', median(@pr));

# Benchmark::runloop compiles the loop in the package of its caller's
# caller, as timeit() does; this wrapper gives it the same view.
package NullLoop;
sub run { Benchmark::runloop($_[0], '') }
