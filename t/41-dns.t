#!perl
# A resolver that hangs (issue 8): names under .he-stall.test take 20 s to
# resolve (an LD_PRELOAD shim, t/data/stall-resolver.c).  Every status
# answer is still 503 within Timeout + 0.1 s, this process keeps its one
# thread and its descriptors, at most one checker is alive, and the stuck
# lookups are killed with their run, not left behind.
use strict;
use warnings;

use Config;
use File::Temp qw(tempdir);
use FindBin;
use Test::More;
use Time::HiRes qw(time sleep);
use lib "$FindBin::Bin/lib";
use HETest::Ps qw(:all);
use HEBuild qw(need_backend);

plan skip_all => 'needs Linux /proc' unless -r '/proc/self/status';

# Build the shim and run this test again under it.
unless (($ENV{LD_PRELOAD} // '') =~ /stall-resolver\.so/) {
    my $dir = tempdir(CLEANUP => 1);
    my $so = "$dir/stall-resolver.so";
    my $cc = $ENV{CC} // $Config{cc};
    my $out = `$cc -shared -fPIC -o $so $FindBin::Bin/data/stall-resolver.c -ldl 2>&1`;
    if ($?) {
        plan skip_all => "cannot build the resolver shim: $out"
            unless ($ENV{CI} // '') eq 'true';
        fail("cannot build the resolver shim (CI=true: not a skip): $out");
        done_testing;
        exit 1;
    }
    local $ENV{LD_PRELOAD} = $so;
    system($^X, (map { "-I$_" } @INC), $0);
    exit($? >> 8);
}

require RT::Extension::HealthEndpoint;
my $TIMEOUT = 0.05;
my $PROBES = 150;

my @cases = (
    [ Pg    => db => { type => 'Pg', host => 'db.he-stall.test', name => 'x', user => 'x' } ],
    [ mysql => db => { type => 'mysql', host => 'db.he-stall.test', name => 'x', user => 'x' } ],
    [ Redis => redis => { server => 'redis.he-stall.test:6379' } ],
);
for my $case (@cases) {
    my ($backend, $key, $conf) = @$case;
    subtest "$backend: the host name never resolves" => sub {
        need_backend($backend) or return;
        my @log;
        my $app = RT::Extension::HealthEndpoint->wrap(sub { [ 200, [], [] ] },
            cache_seconds => 0, timeout => $TIMEOUT, $key => $conf,
            logger => sub { push @log, $_[1] });
        my %before = proc_status($$);
        my $fds = () = fds($$);
        my ($max, $bad, $checkers) = (0, 0, 0);
        for (1 .. $PROBES) {
            my $t0 = time;
            my $res = $app->({ REQUEST_METHOD => 'GET', PATH_INFO => '/healthz/status' });
            my $took = time - $t0;
            $max = $took if $took > $max;
            $bad++ unless $res->[0] == 503;
            my $n = () = grep { proc_cmdline($_) =~ /for process $$ only/ } checkers();
            $checkers = $n if $n > $checkers;
            sleep 0.01;                 # over 1.5 s: several runs
        }
        is $bad, 0, "$PROBES answers: all 503";
        cmp_ok $max, '<=', $TIMEOUT + 0.1,
            sprintf 'each within Timeout + 0.1 s (slowest %.3f s)', $max;
        is $checkers, 1, 'at most one checker alive at any time';
        my %after = proc_status($$);
        is $after{Threads}, $before{Threads}, "this process keeps $before{Threads} thread";
        is scalar(() = fds($$)), $fds, 'and its descriptors';
        like "@log", qr/check failed .*timed out after [\d.]+ s during resolving/,
            'the log says it was stuck resolving';
        my ($checker) = grep { proc_cmdline($_) =~ /for process $$ only/ } checkers();
        ok wait_for(1.5, sub { !run_children($checker) }),
            'no stuck lookup outlives its run by more than 1 s';
    };
}
done_testing;
