#!/usr/bin/perl
# End to end: a real RT (rt-server + Starman, 2 workers) on a private
# PostgreSQL, with the plugin loaded from blib.  Everything goes through
# real HTTP, without a cookie jar.  HETEST_RT_HOME picks the RT (RT 5 by
# default; see t/lib/HETest/RT.pm).
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use HETest::RT;
BEGIN { HETest::RT->require_or_skip(db => 'Pg') }
use Test::More;
use Time::HiRes qw(time sleep);

my $TIMEOUT = 1;
my $rt = HETest::RT->new(
    db     => 'Pg',
    config => {
        HealthEndpoint_Timeout      => $TIMEOUT,
        HealthEndpoint_CacheSeconds => 0,
    },
);
$rt->start;
note HETest::RT::rt_description() . " on " . $rt->base_url . ", Pg on port " . $rt->pg_port
    . sprintf(', db init %.1fs, RT start %.1fs', $rt->{db_init_seconds}, $rt->{rt_start_seconds});
my $http = $rt->http;
my %ok = (database => 'ok', redis => 'skipped');

$rt->check_loaded_from;

subtest 'endpoints answer inside RT' => sub {
    $rt->check_ping('/healthz/ping');
    $rt->check_status('/healthz/status', \%ok);
    $rt->check_405('/healthz/ping');
    $rt->check_405('/healthz/status');
};

subtest "RT's own pages still work" => sub {
    my $r = $http->get($rt->url('/'));
    is $r->{status}, 200, 'GET / is 200';
    # RT 6 adds hx-boost="false" to the form; the attribute order may change
    like $r->{content}, qr{<form\b(?=[^>]*\bid="login")(?=[^>]*\bmethod="post")[^>]*\baction="/NoAuth/Login\.html"},
        "RT's login form";
    like $r->{content}, qr{name="user"}, 'user field';
    like $r->{content}, qr{name="pass"}, 'password field';
    ok exists $r->{headers}{'set-cookie'}, 'RT itself sets its session cookie (control)';
    $r = $http->get($rt->url('/healthz/pingx'));
    isnt $r->{content}, 'pong', 'a path that only starts like ours is not ours';
};

subtest 'a probe with a typo gets 404 from the module, not a session from RT' => sub {
    my $before = $rt->session_count;
    for my $p ('/healthz', '/healthz/', '/healthz/ping/', '/healthz/statsu') {
        my $r = $http->get($rt->url($p));
        is $r->{status}, 404, "$p: 404";
        is $r->{content}, 'not found', "$p: the fixed body";
        ok !exists $r->{headers}{'set-cookie'}, "$p: no Set-Cookie";
    }
    is $rt->session_count, $before, 'no session was created';
    my $r = $http->get($rt->url('/HEALTHZ/PING'));
    isnt $r->{status}, 404, 'a case variant stays RT\'s';
};

subtest '1000 probes create no sessions; 20 RT pages create 20' => sub {
    my $before = $rt->session_count;
    my ($bad, $n) = (0, 0);
    my $t0 = time;
    for my $i (1 .. 500) {
        for my $p ('/healthz/ping', '/healthz/status') {
            my $r = $http->get($rt->url($p));
            $n++;
            $bad++ if $r->{status} != 200 || exists $r->{headers}{'set-cookie'};
        }
    }
    my $took = time - $t0;
    is $bad, 0, "$n probes: all 200 without Set-Cookie";
    is $rt->session_count, $before, "sessions table unchanged ($before rows)";
    note sprintf '%d probes in %.2f s (%.0f/s, one keep-alive client, CacheSeconds 0)',
        $n, $took, $n / $took;

    # control: cookie-less hits on a Mason /NoAuth/ page each create a session
    my ($ok, $cookies) = (0, 0);
    for (1 .. 20) {
        my $r = $http->get($rt->url('/NoAuth/Login.html'));
        $ok++ if $r->{status} == 200;
        $cookies++ if exists $r->{headers}{'set-cookie'};
    }
    is $ok, 20, '20 x GET /NoAuth/Login.html: 200';
    is $cookies, 20, '... each with a session cookie';
    is $rt->session_count, $before + 20, 'control: 20 cookie-less RT requests added 20 sessions';
};

subtest 'PostgreSQL down => 503, ping still pong, error logged' => sub {
    my $mark = $rt->rt_log_mark;
    $rt->stop_pg;
    my $t0 = time;
    my $r = $rt->check_status('/healthz/status', { database => 'fail', redis => 'skipped' });
    my $took = time - $t0;
    cmp_ok $took, '<=', 2 * ($TIMEOUT + 1), sprintf('GET+HEAD answered in %.2fs', $took);
    unlike $r->{content}, qr/refused|connect|server|error|timeout|password/i, 'no error text in the body';
    $rt->check_ping('/healthz/ping');
    my $log = $rt->wait_until(5, sub {
        my $l = $rt->rt_log_since($mark);
        $l =~ /database check failed/ ? $l : undef;
    }) // $rt->rt_log_since($mark);
    like $log, qr/\[error\]: [^\n]*database check failed/, 'RT log: "database check failed" at error level';
    my ($line) = $log =~ /^([^\n]*database check failed[^\n]*)$/m;
    like $line // '', qr/refused|could not connect|connection/i, "log line carries libpq's error text"
        and note "log: $line";
};

subtest 'PostgreSQL back => 200 without restarting RT' => sub {
    my $pid = $rt->{rt_pid};
    $rt->start_pg;
    my $ok = $rt->wait_until(15, sub { $http->get($rt->url('/healthz/status'))->{status} == 200 });
    ok $ok, 'status recovers';
    # both workers must have recovered: several requests in a row
    my $bad = grep { $http->get($rt->url('/healthz/status'))->{status} != 200 } 1 .. 20;
    is $bad, 0, '20 more status probes: all 200';
    $rt->check_status('/healthz/status', \%ok);
    is $rt->{rt_pid}, $pid, 'same rt-server process';
    ok kill(0, $pid), 'rt-server still running';
};

subtest 'PostgreSQL hanging => 503 within timeout + 1s' => sub {
    my $mark = $rt->rt_log_mark;
    $rt->freeze_pg;
    my $t0 = time;
    my $r = $http->get($rt->url('/healthz/status'));
    my $took = time - $t0;
    $rt->thaw_pg;
    is $r->{status}, 503, 'status 503 while the database hangs';
    is $r->{content}, HETest::RT::status_body({ database => 'fail', redis => 'skipped' }), 'database fail';
    cmp_ok $took, '<=', $TIMEOUT + 1, sprintf('answered in %.2fs (timeout %ss)', $took, $TIMEOUT);
    cmp_ok $took, '>=', $TIMEOUT * 0.8, 'and did wait for the timeout';
    my $log = $rt->wait_until(5, sub {
        my $l = $rt->rt_log_since($mark);
        $l =~ /database check failed/ ? $l : undef;
    });
    ok $log, 'failure logged';
    my $ok = $rt->wait_until(15, sub { $http->get($rt->url('/healthz/status'))->{status} == 200 });
    ok $ok, 'recovers after the database resumes';
};

subtest 'custom paths from the site config' => sub {
    $rt->restart_rt(config => {
        HealthEndpoint_PingPath   => '/lb/ping',
        HealthEndpoint_StatusPath => '/lb/status',
    });
    $rt->check_ping('/lb/ping');
    $rt->check_status('/lb/status', \%ok);
    $rt->check_405('/lb/ping');
    my $r = $http->get($rt->url('/healthz/ping'));
    isnt $r->{content}, 'pong', 'default ping path no longer answered by the plugin';
    isnt $r->{status}, 200, '... (RT answers it: not found)';
};

subtest 'RT under WebPath /rt' => sub {
    $rt->restart_rt(webpath => '/rt', config => {
        HealthEndpoint_PingPath   => undef,
        HealthEndpoint_StatusPath => undef,
    });
    is $rt->url('/healthz/ping'), 'http://127.0.0.1:' . $rt->port . '/rt/healthz/ping', 'URL';
    $rt->check_ping('/healthz/ping');
    $rt->check_status('/healthz/status', \%ok);
    $rt->check_405('/healthz/status');
    my $r = $http->get($rt->url('/'));
    is $r->{status}, 200, 'RT login page at /rt/';
    like $r->{content}, qr{action="/rt/NoAuth/Login\.html"}, 'login form under /rt';
    $r = $http->get('http://127.0.0.1:' . $rt->port . '/healthz/ping');
    isnt $r->{content}, 'pong', '/healthz/ping outside the WebPath is not answered';
};

$rt->cleanup;
done_testing;
