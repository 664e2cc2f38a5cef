#!/usr/bin/perl
# bench/rt.pl - the ping inside a real Request Tracker (stage 4 of
# bench/run, optional): a throw-away RT 5 on PostgreSQL, run by
# t/lib/HETest/RT.pm, with Plugin('RT::Extension::HealthEndpoint'), under
# Starman with the same worker count as stage 2.
#
#   perl bench/rt.pl --blib BLIB [--seconds 3] [--rounds 2] [--workers 2]
#
# Compares GET /healthz/ping with RT's /NoAuth/ pages that a load balancer
# is typically pointed at: requests per second (wrk, best of --rounds,
# alternating) and web sessions created per 1000 requests (RT's sessions
# table before and after each wrk run; wrk keeps no cookies, like a load
# balancer's health checker; measured with exactly counted sequential
# requests, not under wrk).  Candidates: /NoAuth/Login.html (what load
# balancers are usually pointed at) and /NoAuth/Logout.html; the lightest
# is the one with more requests per second.
# Prints a note and exits 0 when RT or HETest::RT is not available.
use strict;
use warnings;

use FindBin ();
use lib "$FindBin::Bin/lib";

use Getopt::Long qw(GetOptions);
use HEBench qw(result median wrk);
use Time::HiRes qw(time);

GetOptions('blib=s' => \(my $BLIB), 'seconds=f' => \(my $SECONDS = 3),
           'rounds=i' => \(my $ROUNDS = 2), 'workers=i' => \(my $WORKERS = 2),
           'connections=i' => \(my $CONN = 8), 'db=s' => \(my $DB = 'Pg'))
    or die "usage: $0 --blib DIR [--seconds S] [--rounds N] [--workers W]\n";

my $tlib = "$FindBin::Bin/../t/lib";
sub skip {
    print "  SKIPPED: $_[0]\n";
    result('rt.skipped', 1);
    exit 0;
}
skip("t/lib/HETest/RT.pm is not there") unless -f "$tlib/HETest/RT.pm";
unshift @INC, $tlib;
eval { require HETest::RT; 1 } or skip("HETest::RT does not load: $@");
$ENV{HETEST_BLIB} = $BLIB if defined $BLIB;
my @missing = HETest::RT->missing(db => $DB);
skip(join '; ', @missing) if @missing;

my $t0 = time;
my $rt = eval {
    my $rt = HETest::RT->new(db => $DB, workers => $WORKERS, quiet => 1,
        config => { HealthEndpoint_CacheSeconds => 0, LogToFile => 'warning' });
    $rt->start;
    $rt;
} or skip("could not start RT: " . ($@ =~ s/\n.*//sr));
printf "  RT 5 on %s up in %.1f s (database init %.1f s), Starman --workers %d\n",
    $DB, time - $t0, $rt->{db_init_seconds} // 0, $WORKERS;

# The /NoAuth/ pages a load balancer is pointed at; each must answer 200.
my $http = HTTP::Tiny->new(timeout => 15, max_redirect => 0);
my @pages;
for my $p (qw(/NoAuth/Login.html /NoAuth/Logout.html)) {
    my $st = 0;
    $st = $http->get($rt->url($p))->{status} for 1 .. 3;   # compile components
    if ($st == 200) { push @pages, $p } else { print "  ($p answers $st: left out)\n" }
}
@pages or skip('no /NoAuth/ candidate answered 200');

my $ping = $http->get($rt->url('/healthz/ping'));
die "ping answered $ping->{status}\n" unless $ping->{status} == 200
    && $ping->{content} eq 'pong';

my @cases = ([ping => '/healthz/ping'], map { [$_ => $_] } @pages);
my (%rps, %sess);
for my $round (0 .. $ROUNDS - 1) {
    for my $i (0 .. $#cases) {
        my ($name, $path) = @{ $cases[($i + $round) % @cases] };
        my $r = wrk(url => $rt->url($path), seconds => $SECONDS,
                    connections => $CONN);
        die "$name: $r->{errors} errors or non-2xx answers\n$r->{raw}" if $r->{errors};
        push @{ $rps{$name} }, $r->{rps};
    }
}

# Sessions per 1000 requests: an exact number of requests, one after the
# other, each without cookies (a new HTTP::Tiny has no cookie jar), the
# count read from RT's sessions table before and after.  1000 pings; 100
# of each page (they are slow), scaled to 1000.
# Requests still queued when wrk stopped finish (and store their session)
# a moment later: wait until the count stays put.
sub settled_sessions {
    my ($last, $n) = (-1, $rt->session_count);
    my $until = time + 15;
    while ($n != $last && time < $until) {
        select undef, undef, undef, 0.5;
        ($last, $n) = ($n, $rt->session_count);
    }
    return $n;
}
for my $c (@cases) {
    my ($name, $path) = @$c;
    my $n = $name eq 'ping' ? 1000 : 100;
    my $url = $rt->url($path);
    my $s0 = settled_sessions();
    for (1 .. $n) {
        my $st = $http->get($url)->{status};
        die "$path answered $st\n" unless $st == 200;
    }
    $sess{$name} = [$rt->session_count - $s0, $n];
}

printf "  %-22s %10s %10s %14s\n", 'path', 'best r/s', 'median',
    'sessions/1000';
my (%best, %per1000);
for my $c (@cases) {
    my ($name, $path) = @$c;
    ($best{$name}) = sort { $b <=> $a } @{ $rps{$name} };
    my ($ds, $n) = @{ $sess{$name} };
    $per1000{$name} = $n ? $ds / $n * 1000 : 0;
    printf "  %-22s %10.1f %10.1f %14.1f   (%d sessions, %d requests)\n",
        $path, $best{$name}, median(@{ $rps{$name} }), $per1000{$name}, $ds, $n;
}
my ($light) = sort { $best{$b} <=> $best{$a} } @pages;
print "  lightest /NoAuth/ page: $light\n";
result('rt.page', $light);
result('rt.ping.rps', sprintf '%.1f', $best{ping});
result('rt.ping.sessions_per_1000', sprintf '%.1f', $per1000{ping});
result('rt.page.rps', sprintf '%.1f', $best{$light});
result('rt.page.sessions_per_1000', sprintf '%.1f', $per1000{$light});
result('rt.ping_vs_page', sprintf '%.1f', $best{ping} / $best{$light});
if ($best{'/NoAuth/Login.html'}) {
    result('rt.login.rps', sprintf '%.1f', $best{'/NoAuth/Login.html'});
    result('rt.ping_vs_login', sprintf '%.1f', $best{ping} / $best{'/NoAuth/Login.html'});
}
$rt->cleanup;
