#!perl
# The timeout bounds every check: a peer that accepts the connection and
# then says nothing (a fake one, or a real server frozen with SIGSTOP) makes
# the check fail after `timeout` seconds, not later, and the ping path does
# not depend on any check.  A closed port fails at once.
#
# The elapsed-time assertions are bound checks with a generous margin
# (timeout*0.9 .. timeout*1.1 + 0.3 s), not performance assertions; the
# measured overshoot is printed with diag.
use strict;
use warnings;

use lib 't/lib';
use Test::More;
use HETest::Servers qw(:all);
use HETest::Util qw(:all);
use RT::Extension::HealthEndpoint;
use HEBuild qw(skip_all_if_omitted);

my %have = map { $_ => 1 } RT::Extension::HealthEndpoint::backends();

my $TIMEOUT = 1;

sub within_bound {
    my ($r, $name, $timeout) = @_;
    $timeout //= $TIMEOUT;
    my ($lo, $hi) = (0.9 * $timeout, 1.1 * $timeout + 0.3);
    my $e = $r->{elapsed};
    diag sprintf '%s: %.3f s for a timeout of %s s (overshoot %+.3f s)',
        $name, $e, $timeout, $e - $timeout;
    my $ok = ok $e >= $lo && $e <= $hi,
        sprintf '%s: returned within [%.2f, %.2f] s', $name, $lo, $hi;
    diag describe($r) unless $ok;
    return $ok;
}

sub ping_is_fast {
    my ($h, $name) = @_;
    my $r = probe($h, path => '/healthz/ping');
    ok $r->{code} == 200 && $r->{body} eq 'pong' && $r->{elapsed} < 0.5,
        "$name: the ping path still answers 200 'pong' at once"
        or diag describe($r);
}

sub need_backend {
    my ($b) = @_;
    skip_all_if_omitted($b);
    need_server(sub { $have{$b} },
                "RT::Extension::HealthEndpoint was built without the $b backend");
}

# a database config that would authenticate, pointed at host:port
sub pg_at { (type => 'Pg', host => '127.0.0.1', port => $_[0], name => 'hedb',
             user => 'heuser', password => 'secret') }
sub my_at { (type => 'mysql', host => '127.0.0.1', port => $_[0], name => 'hedb',
             user => 'heuser', password => 'secret') }

# ---------------------------------------------------------------------------
# a fake peer that accepts and never answers

subtest 'Pg: stalled peer' => sub {
    need_backend('Pg');
    my $stall = start_stalled_peer();
    my $h = new_app(db => { pg_at($stall->port) }, timeout => $TIMEOUT);
    my $r = probe($h);
    expect_status($r, database => 'fail', redis => 'skipped', '503, database fail');
    logged_error($r, qr/database check failed.*time/is, 'a timeout is logged');
    within_bound($r, 'Pg stalled');
    ping_is_fast($h, 'Pg stalled');
};

subtest 'mysql: stalled peer' => sub {
    need_backend('mysql');
    my $stall = start_stalled_peer();
    my $h = new_app(db => { my_at($stall->port) }, timeout => $TIMEOUT);
    my $r = probe($h);
    expect_status($r, database => 'fail', redis => 'skipped', '503, database fail');
    logged_error($r, qr/database check failed.*time/is, 'a timeout is logged');
    within_bound($r, 'mysql stalled');
    ping_is_fast($h, 'mysql stalled');
};

subtest 'Redis: stalled peer' => sub {
    need_backend('Redis');
    my $stall = start_stalled_peer();
    my $h = new_app(redis => { server => $stall->addr }, timeout => $TIMEOUT);
    my $r = probe($h);
    expect_status($r, database => 'skipped', redis => 'fail', '503, redis fail');
    logged_error($r, qr/redis check failed.*time/is, 'a timeout is logged');
    within_bound($r, 'Redis stalled');
    ping_is_fast($h, 'Redis stalled');

    $r = status_of(redis => { server => $stall->addr }, timeout => 0.5);
    expect_status($r, database => 'skipped', redis => 'fail', 'timeout 0.5: fail');
    within_bound($r, 'Redis stalled, fractional timeout', 0.5);

};

subtest 'Redis: a stalled sentinel' => sub {
    need_backend('Redis');
    need_server('redis-server', 'redis-server');
    # A sentinel that never answers gets only a share of the timeout (the
    # rest is kept for the next sentinels and the master), so the check
    # may fail before the timeout: only the upper bound applies.
    my $stall = start_stalled_peer();
    my $r = status_of(redis => { sentinels => [ $stall->addr ], service => 'mymaster' },
                      timeout => $TIMEOUT);
    expect_status($r, database => 'skipped', redis => 'fail', 'a stalled sentinel: fail');
    diag sprintf 'stalled sentinel: failed after %.3f s', $r->{elapsed};
    cmp_ok $r->{elapsed}, '<=', 1.1 * $TIMEOUT + 0.3, 'within the timeout';

    my $master = start_redis();
    my $good = start_sentinel($master, service => 'mymaster');
    $r = status_of(redis => { sentinels => [ $stall->addr, $good->addr ],
                              service => 'mymaster' },
                   timeout => $TIMEOUT);
    expect_status($r, database => 'skipped', redis => 'ok',
                  'a stalled sentinel, then a good one: ok within the timeout');
    diag sprintf 'stalled then good sentinel: ok after %.3f s', $r->{elapsed};
    cmp_ok $r->{elapsed}, '<=', 1.1 * $TIMEOUT + 0.3, 'within the timeout';
};

subtest 'database and Redis stalled together: the checks run at the same time' => sub {
    need_backend('Pg');
    need_backend('Redis');
    my $stall = start_stalled_peer();
    my $r = status_of(db => { pg_at($stall->port) }, redis => { server => $stall->addr },
                      timeout => $TIMEOUT);
    expect_status($r, database => 'fail', redis => 'fail', 'both fail');
    within_bound($r, 'Pg and Redis stalled');
};

# ---------------------------------------------------------------------------
# real servers frozen with SIGSTOP

subtest 'PostgreSQL frozen with SIGSTOP' => sub {
    need_backend('Pg');
    need_server(\&have_postgres, 'PostgreSQL server binaries');
    my $pg = start_postgres();
    my $h = new_app(db => { $pg->db_config }, timeout => $TIMEOUT);
    expect_status(probe($h), database => 'ok', redis => 'skipped', 'ok before');

    $pg->sigstop;
    my $r = probe($h);
    expect_status($r, database => 'fail', redis => 'skipped', 'fail while frozen');
    logged_error($r, qr/database check failed/, 'logged');
    within_bound($r, 'PostgreSQL SIGSTOP');
    ping_is_fast($h, 'PostgreSQL SIGSTOP');

    $r = status_of(db => { $pg->db_config, host => $pg->socket_dir }, timeout => $TIMEOUT);
    expect_status($r, database => 'fail', redis => 'skipped', 'over the socket too');
    within_bound($r, 'PostgreSQL SIGSTOP, unix socket');

    $pg->sigcont;
    expect_status(probe($h), database => 'ok', redis => 'skipped', 'ok after SIGCONT');
    $pg->stop;
};

subtest 'MariaDB frozen with SIGSTOP' => sub {
    need_backend('mysql');
    need_server(\&have_mariadb, 'MariaDB server binaries');
    my $my = start_mariadb();
    my $h = new_app(db => { $my->db_config }, timeout => $TIMEOUT);
    expect_status(probe($h), database => 'ok', redis => 'skipped', 'ok before');

    $my->sigstop;
    my $r = probe($h);
    expect_status($r, database => 'fail', redis => 'skipped', 'fail while frozen');
    within_bound($r, 'MariaDB SIGSTOP');

    $my->sigcont;
    expect_status(probe($h), database => 'ok', redis => 'skipped', 'ok after SIGCONT');
    $my->stop;
};

subtest 'Redis frozen with SIGSTOP' => sub {
    need_backend('Redis');
    need_server('redis-server', 'redis-server');
    my $redis = start_redis(requirepass => 'pw');
    my $h = new_app(redis => { server => $redis->addr, password => 'pw', database => 2 },
                    timeout => $TIMEOUT);
    expect_status(probe($h), database => 'skipped', redis => 'ok', 'ok before');

    $redis->sigstop;
    my $r = probe($h);
    expect_status($r, database => 'skipped', redis => 'fail', 'fail while frozen');
    logged_error($r, qr/redis check failed/, 'logged');
    within_bound($r, 'Redis SIGSTOP');
    ping_is_fast($h, 'Redis SIGSTOP');

    $r = status_of(redis => { sock => $redis->sock, password => 'pw' }, timeout => $TIMEOUT);
    expect_status($r, database => 'skipped', redis => 'fail', 'over the socket too');
    within_bound($r, 'Redis SIGSTOP, unix socket');

    $redis->sigcont;
    expect_status(probe($h), database => 'skipped', redis => 'ok', 'ok after SIGCONT');
    $redis->stop;
};

# ---------------------------------------------------------------------------
# nothing listening: refused at once

subtest 'connection refused fails fast' => sub {
    my $port = closed_port();
    my @cases = (
        [ Pg    => [ db => { pg_at($port) } ] ],
        [ mysql => [ db => { my_at($port) } ] ],
        [ Redis => [ redis => { server => "127.0.0.1:$port" } ] ],
    );
    for my $case (@cases) {
        my ($b, $cfg) = @$case;
        SKIP: {
            skip "built without $b", 2 unless $have{$b};
            my $r = status_of(@$cfg, timeout => 2);
            is $r->{code}, 503, "$b: 503";
            cmp_ok $r->{elapsed}, '<', 0.5, "$b: well before the 2 s timeout"
                or diag describe($r);
            diag sprintf '%s refused in %.3f s', $b, $r->{elapsed};
        }
    }
};

done_testing;
