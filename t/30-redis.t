#!perl
# The Redis check against real redis-server processes: plain, requirepass,
# an ACL user, the unix socket, SELECT, IPv6, a Sentinel, a dead server, a
# peer that speaks garbage, and check_redis on/off/auto.
use strict;
use warnings;

use lib 't/lib';
use Test::More;
use HETest::Servers qw(:all);
use HETest::Util qw(:all);
use RT::Extension::HealthEndpoint;
use HEBuild qw(skip_all_if_omitted);

skip_all_if_omitted('Redis');
need_server(sub { grep { $_ eq 'Redis' } RT::Extension::HealthEndpoint::backends() },
            'RT::Extension::HealthEndpoint was built without the Redis backend');
need_server('redis-server', 'redis-server (redis-server package)');

my $plain = start_redis();
my $pw    = start_redis(requirepass => 'he-redis-pw');
my $acl   = start_redis(username => 'rt', password => 'he-acl-pw');

sub redis_status { status_of(redis => {@_}) }

subtest 'plain' => sub {
    my $r = redis_status(server => $plain->addr);
    expect_status($r, database => 'skipped', redis => 'ok', 'ok');
    expect_status(status_of(redis => { server => $plain->addr }, check_redis => 1),
                  database => 'skipped', redis => 'ok', 'check_redis => 1: ok');
};

subtest 'requirepass' => sub {
    expect_status(redis_status(server => $pw->addr, password => 'he-redis-pw'),
                  database => 'skipped', redis => 'ok', 'right password: ok');

    my $r = redis_status(server => $pw->addr, password => 'wrong');
    expect_status($r, database => 'skipped', redis => 'fail', 'wrong password: fail');
    logged_error($r, qr/redis check failed.*(WRONGPASS|invalid password)/s,
                 "the server's answer is logged");
    unlike $r->{body}, qr/WRONGPASS|password/, 'not in the body';

    $r = redis_status(server => $pw->addr);
    expect_status($r, database => 'skipped', redis => 'fail', 'no password: fail');
    logged_error($r, qr/redis check failed.*NOAUTH/s, 'NOAUTH is logged');
};

subtest 'ACL user' => sub {
    expect_status(redis_status(server => $acl->addr, username => 'rt',
                               password => 'he-acl-pw'),
                  database => 'skipped', redis => 'ok', 'user and password: ok');

    my $r = redis_status(server => $acl->addr, username => 'rt', password => 'wrong');
    expect_status($r, database => 'skipped', redis => 'fail', 'wrong password: fail');
    logged_error($r, qr/redis check failed.*WRONGPASS/s, 'logged');

    $r = redis_status(server => $acl->addr, username => 'nobody-here',
                      password => 'he-acl-pw');
    expect_status($r, database => 'skipped', redis => 'fail', 'unknown user: fail');

    $r = redis_status(server => $acl->addr, password => 'he-acl-pw');
    expect_status($r, database => 'skipped', redis => 'fail',
                  'password without the user (the default user is off): fail');

    $r = redis_status(server => $acl->addr);
    expect_status($r, database => 'skipped', redis => 'fail', 'no credentials: fail');
    logged_error($r, qr/redis check failed.*NOAUTH/s, 'NOAUTH is logged');
};

subtest 'unix socket' => sub {
    expect_status(redis_status(sock => $plain->sock),
                  database => 'skipped', redis => 'ok', 'ok');
    expect_status(redis_status(sock => $plain->sock, server => '127.0.0.1:' . closed_port()),
                  database => 'skipped', redis => 'ok', 'the socket wins over server');
    expect_status(redis_status(sock => $pw->sock, password => 'he-redis-pw'),
                  database => 'skipped', redis => 'ok', 'with a password: ok');

    my $r = redis_status(sock => $plain->dir . '/nope.sock');
    expect_status($r, database => 'skipped', redis => 'fail', 'a missing socket: fail');
    logged_error($r, qr/redis check failed/, 'logged');
};

subtest 'database' => sub {
    expect_status(redis_status(server => $plain->addr, database => 3),
                  database => 'skipped', redis => 'ok', 'database 3: ok');
    expect_status(redis_status(server => $pw->addr, password => 'he-redis-pw',
                               database => 15),
                  database => 'skipped', redis => 'ok', 'database 15 with AUTH: ok');

    my $r = redis_status(server => $plain->addr, database => 99);
    expect_status($r, database => 'skipped', redis => 'fail',
                  'database 99 (the server has 16): fail');
    logged_error($r, qr/redis check failed.*(out of range|invalid)/is,
                 "the server's answer is logged");
};

subtest 'IPv6 [::1]' => sub {
    plan skip_all => 'this machine has no usable ::1 (not a missing server)'
        unless have_ipv6();
    expect_status(redis_status(server => '[::1]:' . $plain->port),
                  database => 'skipped', redis => 'ok', 'ok');
    my $r = redis_status(server => '[::1]:' . closed_port());
    expect_status($r, database => 'skipped', redis => 'fail', 'closed port: fail');
};

subtest 'Sentinel' => sub {
    my $sent = start_sentinel($plain, service => 'mymaster');
    note 'sentinel on ' . $sent->addr . ' for ' . $plain->addr;
    expect_status(redis_status(sentinels => [ $sent->addr ], service => 'mymaster'),
                  database => 'skipped', redis => 'ok', 'master found and ok');
    expect_status(redis_status(sentinels => [ '127.0.0.1:' . closed_port(), $sent->addr ],
                               service => 'mymaster'),
                  database => 'skipped', redis => 'ok',
                  'a dead sentinel first, then a live one: ok');

    my $r = redis_status(sentinels => [ $sent->addr ], service => 'nosuchmaster');
    expect_status($r, database => 'skipped', redis => 'fail', 'unknown service: fail');
    logged_error($r, qr/redis check failed/, 'logged');

    $r = redis_status(sentinels => [ '127.0.0.1:' . closed_port() ], service => 'mymaster');
    expect_status($r, database => 'skipped', redis => 'fail', 'no sentinel up: fail');

    my $sent_pw = start_sentinel($pw, service => 'pwmaster');
    expect_status(redis_status(sentinels => [ $sent_pw->addr ], service => 'pwmaster',
                               password => 'he-redis-pw'),
                  database => 'skipped', redis => 'ok',
                  'a master with requirepass, password given: ok');
    $r = redis_status(sentinels => [ $sent_pw->addr ], service => 'pwmaster');
    expect_status($r, database => 'skipped', redis => 'fail',
                  'the same master without the password: fail');

    # the sentinel still names the master, but the master is gone
    my $gone = start_redis();
    my $sent_gone = start_sentinel($gone, service => 'gone');
    $gone->stop;
    $r = redis_status(sentinels => [ $sent_gone->addr ], service => 'gone');
    expect_status($r, database => 'skipped', redis => 'fail',
                  'the master the sentinel names is down: fail');
};

subtest 'down' => sub {
    my $tmp = start_redis();
    my $h = new_app(redis => { server => $tmp->addr });
    expect_status(probe($h), database => 'skipped', redis => 'ok', 'ok while up');
    $tmp->stop;
    my $r = probe($h);
    expect_status($r, database => 'skipped', redis => 'fail', 'fail while down');
    logged_error($r, qr/redis check failed/, 'logged');
    cmp_ok $r->{elapsed}, '<', 1.5, 'connection refused does not wait for the timeout'
        or diag describe($r);
    $tmp->start;
    expect_status(probe($h), database => 'skipped', redis => 'ok',
                  'ok again after a restart');
};

subtest 'check_redis' => sub {
    my $dead = '127.0.0.1:' . closed_port();
    expect_status(status_of(redis => { server => $dead }, check_redis => 0),
                  database => 'skipped', redis => 'skipped',
                  'check_redis => 0: skipped and 200 even with a dead server');
    expect_status(status_of(check_redis => undef),
                  database => 'skipped', redis => 'skipped',
                  'check_redis undef and no redis hash: skipped');
    expect_status(status_of(redis => { server => $dead }, check_redis => undef),
                  database => 'skipped', redis => 'fail', errors_ok => 1,
                  'check_redis undef with a redis hash: checked (fail here)');
};

subtest 'a peer that is not Redis' => sub {
    for my $reply ("hello\r\n", "-ERR x\r\n", "+OK\r\n" x 3) {
        (my $shown = $reply) =~ s/\r\n/\\r\\n/g;
        my $peer = start_fake_peer(reply => $reply);
        my $r = redis_status(server => $peer->addr, password => 'x', database => 1);
        expect_status($r, database => 'skipped', redis => 'fail',
                      "a peer answering '$shown': fail");
        logged_error($r, qr/redis check failed/, 'logged');
        cmp_ok $r->{elapsed}, '<', 1.5, 'without waiting for the timeout'
            or diag describe($r);
        $peer->stop;
    }
    my $peer = start_fake_peer(reply => "hello\r\n");
    my $r = redis_status(server => $peer->addr);
    expect_status($r, database => 'skipped', redis => 'fail',
                  'no AUTH/SELECT, garbage instead of +PONG: fail');
};

done_testing;
