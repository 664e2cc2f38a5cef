#!/usr/bin/perl
# RT laid out as a source install leaves it (var/ belongs to root, only
# its log, Mason and session directories to the web user), started as
# root with Starman's --user: PSGIWrap runs as root, so the state file is
# left to the first worker; the workers create it as the web user, and
# the checker runs as that user and ends with the root-owned master.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use HETest::RT;
BEGIN { HETest::RT->require_or_skip(db => 'Pg') }
use Test::More;
use POSIX ();
use Time::HiRes qw(time sleep);
use HETest::Proc qw(server_user);
use HETest::Ps qw(mappers proc_status wait_for);

unless ($> == 0) {
    my $why = 'needs root: the server starts as root and drops to a user';
    plan skip_all => $why unless ($ENV{CI} // '') eq 'true';
    fail("$why (under CI=true a skip is a failure)");
    done_testing;
    exit 1;
}

my $rt = HETest::RT->new(db => 'Pg', root_starts => 1,
    config => { HealthEndpoint_CacheSeconds => 0, HealthEndpoint_Timeout => 1 });
$rt->start;
my %u = server_user();
my $var = $rt->dir . '/var';
is((stat $var)[4], 0, 'var/ belongs to root, as in a source install');

my $r = $rt->http->get($rt->url('/healthz/status'));
is $r->{status}, 200, 'status 200';
my $state = $rt->state_file;
ok -f $state, 'the state file exists';
is((stat $state)[4], $u{uid}, "it belongs to the web user ($u{name})");
like $rt->rt_log, qr/shared state \Q$state\E: set up by the first worker \(this process runs as root\)/,
    'the startup log says the first worker sets it up';
unlike $rt->rt_log, qr/state file cannot be used/, 'and it could';

my ($checker) = wait_for(3, sub { my @p = mappers($state, 'rt-he-checker'); @p ? \@p : undef })
    ? mappers($state, 'rt-he-checker') : ();
unless (ok $checker, 'one checker maps it') {
    $rt->cleanup;
    done_testing;
    exit 1;
}
my %st = proc_status($checker);
is((split ' ', $st{Uid})[0], $u{uid}, "the checker runs as $u{name}, not root");
my $master = $rt->rt_pid;
kill 'TERM', $master;
ok wait_for(20, sub { waitpid($master, POSIX::WNOHANG()) == $master }),
    'TERM: the master shuts its workers down and exits';
my $t0 = time;
ok wait_for(3, sub { !grep { $_ == $checker } mappers($state) }), 'then the checker exits';
cmp_ok time - $t0, '<=', 2, sprintf 'within 2 s of the master (%.2f s)', time - $t0;
$rt->cleanup;
done_testing;
