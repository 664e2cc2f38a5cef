#!/usr/bin/perl
# End to end: a real RT (HETEST_RT_HOME) keeping its web sessions in a
# private redis (Apache::Session::Browseable::Redis), database on SQLite.
# The plugin must find redis by itself from $WebSessionClass /
# %WebSessionProperties.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/lib";
use HETest::RT;
BEGIN { HETest::RT->require_or_skip(db => 'SQLite', redis => 1) }
use Test::More;
use Time::HiRes qw(time sleep);

my $TIMEOUT = 1;
my $rt = HETest::RT->new(
    db             => 'SQLite',
    redis          => 1,
    redis_password => 'hetest-redis-pw',
    redis_database => 3,
    config         => {
        HealthEndpoint_Timeout      => $TIMEOUT,
        HealthEndpoint_CacheSeconds => 0,
    },
);
$rt->start;
note HETest::RT::rt_description() . ' on ' . $rt->base_url . ', redis on port ' . $rt->redis_port;
$rt->check_loaded_from;
my $http = $rt->http;
my %ok = (database => 'ok', redis => 'ok');

subtest 'redis auto-detected from $WebSessionClass' => sub {
    $rt->check_ping('/healthz/ping');
    $rt->check_status('/healthz/status', \%ok);
};

subtest 'RT really keeps its sessions in redis (control)' => sub {
    my $before = $rt->session_count;
    for (1 .. 3) {
        my $r = $http->get($rt->url('/NoAuth/Login.html'));
        is $r->{status}, 200, 'GET /NoAuth/Login.html';
        like $r->{headers}{'set-cookie'} // '', qr/^RT_SID_/, 'RT session cookie';
    }
    is $rt->session_count, $before + 3, 'DBSIZE (database 3) grew by 3';
};

subtest 'probes add no keys' => sub {
    my $before = $rt->session_count;
    my ($bad, $n) = (0, 0);
    for (1 .. 300) {
        for my $p ('/healthz/ping', '/healthz/status') {
            my $r = $http->get($rt->url($p));
            $n++;
            $bad++ if $r->{status} != 200 || exists $r->{headers}{'set-cookie'};
        }
    }
    is $bad, 0, "$n probes: all 200 without Set-Cookie";
    is $rt->session_count, $before, "DBSIZE unchanged ($before)";
    my $keys = $rt->redis_cmd('KEYS', '*');
    is scalar(grep { !/^[0-9a-f]{32,}$/ } @$keys), 0, 'only session keys in the database'
        or diag explain $keys;
};

subtest 'redis down => 503 redis fail, database ok, ping 200' => sub {
    my $mark = $rt->rt_log_mark;
    $rt->stop_redis;
    my $t0 = time;
    my $r = $rt->check_status('/healthz/status', { database => 'ok', redis => 'fail' });
    cmp_ok time - $t0, '<=', 2 * ($TIMEOUT + 1), 'answered in time';
    unlike $r->{content}, qr/refused|connect|error|timeout/i, 'no error text in the body';
    $rt->check_ping('/healthz/ping');
    my $log = $rt->wait_until(5, sub {
        my $l = $rt->rt_log_since($mark);
        $l =~ /redis check failed/ ? $l : undef;
    }) // $rt->rt_log_since($mark);
    like $log, qr/\[error\]: [^\n]*redis check failed/, 'RT log: "redis check failed" at error level';
    my ($line) = $log =~ /^([^\n]*redis check failed[^\n]*)$/m;
    like $line // '', qr/refused|connect/i, "log line carries the client library's error"
        and note "log: $line";
};

subtest 'redis back => 200 without restarting RT' => sub {
    $rt->start_redis;
    ok $rt->wait_until(15, sub { $http->get($rt->url('/healthz/status'))->{status} == 200 }),
        'status recovers';
    my $bad = grep { $http->get($rt->url('/healthz/status'))->{status} != 200 } 1 .. 20;
    is $bad, 0, '20 more probes (both workers): all 200';
    $rt->check_status('/healthz/status', \%ok);
};

subtest 'redis hanging => 503 within timeout + 1s' => sub {
    $rt->freeze_redis;
    my $t0 = time;
    my $r = $http->get($rt->url('/healthz/status'));
    my $took = time - $t0;
    $rt->thaw_redis;
    is $r->{status}, 503, 'status 503';
    is $r->{content}, HETest::RT::status_body({ database => 'ok', redis => 'fail' }), 'redis fail';
    cmp_ok $took, '<=', $TIMEOUT + 1, sprintf('answered in %.2fs (timeout %ss)', $took, $TIMEOUT);
    ok $rt->wait_until(15, sub { $http->get($rt->url('/healthz/status'))->{status} == 200 }),
        'recovers after redis resumes';
};

subtest 'wrong redis password => fail (and logged)' => sub {
    my $mark = $rt->rt_log_mark;
    $rt->restart_rt(session_properties => {
        server => '127.0.0.1:' . $rt->redis_port, password => 'Pw-7f3a-not-it',
        database => 3 });
    $rt->check_status('/healthz/status', { database => 'ok', redis => 'fail' });
    my $log = $rt->wait_until(5, sub {
        my $l = $rt->rt_log_since($mark);
        $l =~ /redis check failed/ ? $l : undef;
    });
    ok $log, 'logged';
    like $log // '', qr/redis check failed .*(?:WRONGPASS|invalid password|NOAUTH|AUTH)/,
        "the server's reason is logged";
    unlike $log // '', qr/Pw-7f3a-not-it/, 'the password is not';
    $rt->{session_properties} = undef;
};

subtest 'HealthEndpoint_CheckRedis 0 => skipped, even with redis down' => sub {
    $rt->restart_rt(config => { HealthEndpoint_CheckRedis => 0 });
    $rt->check_status('/healthz/status', { database => 'ok', redis => 'skipped' });
    $rt->stop_redis;
    $rt->check_status('/healthz/status', { database => 'ok', redis => 'skipped' });
    $rt->check_ping('/healthz/ping');
    $rt->start_redis;
};

subtest 'HealthEndpoint_CheckRedis 1 without a redis session class' => sub {
    # forced on, but RT itself is on file sessions: nothing to find redis
    # from but %WebSessionProperties (still set to our redis)
    $rt->restart_rt(
        redis_sessions => 0,
        config         => { HealthEndpoint_CheckRedis => 1 },
        session_properties => {
            server => '127.0.0.1:' . $rt->redis_port, password => 'hetest-redis-pw' },
    );
    $rt->check_status('/healthz/status', \%ok);
};

$rt->cleanup;
done_testing;
