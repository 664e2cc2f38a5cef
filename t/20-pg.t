#!perl
# The PostgreSQL check against a real, throw-away PostgreSQL server:
# SCRAM over TCP and over the unix socket, failures with their reasons
# logged (never in the body), restart, DatabaseExtraDSN, HEAD.
use strict;
use warnings;

use lib 't/lib';
use Test::More;
use HETest::Servers qw(:all);
use HETest::Util qw(:all);
use RT::Extension::HealthEndpoint;
use HEBuild qw(skip_all_if_omitted);

skip_all_if_omitted('Pg');
need_server(sub { grep { $_ eq 'Pg' } RT::Extension::HealthEndpoint::backends() },
            'RT::Extension::HealthEndpoint was built without the Pg backend');
need_server(\&have_postgres,
            'PostgreSQL server binaries (initdb, postgres, psql, pg_isready)');

my $pg = start_postgres();
my %db = $pg->db_config;        # type Pg, 127.0.0.1:port, name, user, password
note 'PostgreSQL on ' . $pg->addr . ', socket dir ' . $pg->socket_dir;

subtest 'TCP with a SCRAM password' => sub {
    my $r = status_of(db => {%db});
    expect_status($r, database => 'ok', redis => 'skipped', 'ok over TCP');
};

subtest 'unix socket directory as host' => sub {
    my $r = status_of(db => {%db, host => $pg->socket_dir});
    expect_status($r, database => 'ok', redis => 'skipped', 'ok over the socket');
};

subtest 'wrong password' => sub {
    my $r = status_of(db => {%db, password => 'not-the-password'});
    expect_status($r, database => 'fail', redis => 'skipped', '503, database fail');
    logged_error($r, qr/database check failed/, 'failure logged at error');
    logged_error($r, qr/database check failed.*password authentication failed/s,
                 'with the server message');
    unlike $r->{body}, qr/password|authentication/, 'no error text in the body';
};

subtest 'no password, unknown user, unknown database' => sub {
    my $r = status_of(db => {%db, password => undef});
    expect_status($r, database => 'fail', redis => 'skipped', 'no password: fail');
    logged_error($r, qr/database check failed.*password/s, 'reason logged');

    $r = status_of(db => {%db, user => 'nosuchuser'});
    expect_status($r, database => 'fail', redis => 'skipped', 'unknown user: fail');
    logged_error($r, qr/database check failed/, 'logged');

    $r = status_of(db => {%db, name => 'nosuchdb'});
    expect_status($r, database => 'fail', redis => 'skipped', 'unknown db: fail');
    logged_error($r, qr/database check failed.*nosuchdb.*does not exist/s,
                 'server message logged');
};

subtest 'server stopped, then restarted' => sub {
    my $h = new_app(db => {%db});
    expect_status(probe($h), database => 'ok', redis => 'skipped', 'ok while up');

    $pg->stop;
    my $r = probe($h);
    expect_status($r, database => 'fail', redis => 'skipped', 'fail while down');
    logged_error($r, qr/database check failed/, 'failure logged');
    cmp_ok $r->{elapsed}, '<', 1.5, 'connection refused does not wait for the timeout'
        or diag describe($r);

    expect_status(status_of(db => {%db, host => $pg->socket_dir}),
                  database => 'fail', redis => 'skipped', 'socket: fail too');

    $pg->start;
    expect_status(probe($h), database => 'ok', redis => 'skipped',
                  'ok again on the next probe after the restart');
    expect_status(status_of(db => {%db, host => $pg->socket_dir}),
                  database => 'ok', redis => 'skipped', 'socket is back too');
};

subtest 'server at max_connections' => sub {
    plan skip_all => 'DBD::Pg needed to fill the connection slots'
        unless eval { require DBI; require DBD::Pg; 1 };
    my @held;
    my $dsn = "dbi:Pg:host=127.0.0.1;port=$db{port};dbname=$db{name}";
    while (@held < 100) {       # max_connections=40 on the test server
        my $dbh = DBI->connect($dsn, $db{user}, $db{password},
                               { PrintError => 0, RaiseError => 0 }) or last;
        push @held, $dbh;
    }
    ok(@held > 0 && @held < 100, scalar(@held) . ' connections fill the server');
    my $r = status_of(db => {%db});
    expect_status($r, database => 'fail', redis => 'skipped', 'full server: fail');
    logged_error($r, qr/database check failed.*too many clients|remaining connection slots/s,
                 'the server\'s reason is logged');
    $_->disconnect for @held;
    @held = ();
    $r = status_of(db => {%db});
    expect_status($r, database => 'ok', redis => 'skipped', 'slots free again: ok');
};

subtest 'DatabaseExtraDSN' => sub {
    my $r = status_of(db => {%db, extra => { sslmode => 'disable' }});
    expect_status($r, database => 'ok', redis => 'skipped', 'sslmode=disable: ok');

    $r = status_of(db => {%db, extra => { sslmode => 'require' }});
    expect_status($r, database => 'fail', redis => 'skipped',
                  'sslmode=require against a server without SSL: fail');
    logged_error($r, qr/database check failed.*SSL/is, 'reason logged');

    $r = status_of(db => {%db, extra => { bogus => 1 }});
    expect_status($r, database => 'fail', redis => 'skipped',
                  'an unknown libpq keyword: fail');
    logged_error($r, qr/database check failed.*bogus/s, 'the keyword is named');
};

subtest 'host lists, as RT passes $DatabaseHost: stalled, primary, standby' => sub {
    my $standby = start_standby($pg);
    my $stall = start_stalled_peer();
    my $two = sub { (host => '127.0.0.1,127.0.0.1', port => join ',', @_) };

    my $r = status_of(timeout => 3, db => { %db, $two->($stall->port, $pg->port),
                                            extra => { connect_timeout => 1 } });
    expect_status($r, database => 'ok', redis => 'skipped',
                  'a stalled host first, then the primary: ok, as RT would connect');
    cmp_ok $r->{elapsed}, '<', 2.8, sprintf 'the stalled host got connect_timeout '
        . '(1, which libpq takes as 2 s), not the whole deadline: %.2f s', $r->{elapsed};

    my %rw = (target_session_attrs => 'read-write');
    $r = status_of(db => { %db, port => $standby->port, extra => {%rw} });
    expect_status($r, database => 'fail', redis => 'skipped',
                  'a standby alone with target_session_attrs=read-write: fail');
    logged_error($r, qr/host .*\Q${\ $standby->port }\E|read-only|read only/i,
                 'the reason names the host or says read-only');
    $r = status_of(db => { %db, port => $standby->port,
                           extra => { target_session_attrs => 'any' } });
    expect_status($r, database => 'ok', redis => 'skipped',
                  'the same standby with target_session_attrs=any: ok');
    $r = status_of(db => { %db, port => $standby->port });
    expect_status($r, database => 'ok', redis => 'skipped',
                  'and without target_session_attrs (a standby answers SELECT 1)');
    $r = status_of(db => { %db, $two->($standby->port, $pg->port), extra => {%rw} });
    expect_status($r, database => 'ok', redis => 'skipped',
                  'standby first, then the primary, read-write: the primary answers');

    my $closed = closed_port();
    $r = status_of(db => { %db, $two->($closed, $standby->port), extra => {%rw} });
    expect_status($r, database => 'fail', redis => 'skipped', 'nothing writable: fail');
    logged_error($r, qr/host 127\.0\.0\.1:$closed: .*; host 127\.0\.0\.1:${\ $standby->port }: /,
                 'the reason names each host that failed');
    $standby->stop;
};

subtest 'unknown database type' => sub {
    my $r = status_of(db => {%db, type => 'NoSuchDB'});
    expect_status($r, database => 'fail', redis => 'skipped', 'fail');
    logged_error($r, qr/NoSuchDB/, 'the type is named in an error');
};

subtest 'no db => skipped' => sub {
    my $r = status_of();
    expect_status($r, database => 'skipped', redis => 'skipped', 'skipped, 200');
};

subtest 'HEAD: same status and headers, empty body' => sub {
    for my $case ([ok => {%db}], [fail => {%db, password => 'wrong'}]) {
        my ($what, $cfg) = @$case;
        my $h = new_app(db => $cfg);
        my $get  = probe($h);
        my $head = probe($h, method => 'HEAD');
        is $head->{code}, $get->{code}, "$what: same status ($get->{code})";
        is_deeply $head->{header_list}, $get->{header_list},
            "$what: same headers, Content-Length of the GET body included";
        is $head->{body}, '', "$what: empty body";
        is $get->{headers}{'content-length'}, length $get->{body},
            "$what: Content-Length is the GET body's length";
    }
};

subtest 'the cache holds a result for cache_seconds' => sub {
    my $h = new_app(db => {%db}, cache_seconds => 30);
    expect_status(probe($h), database => 'ok', redis => 'skipped', 'ok, cached');
    $pg->stop;
    expect_status(probe($h), database => 'ok', redis => 'skipped',
                  'still ok from the cache while down');
    expect_status(status_of(db => {%db}), database => 'fail', redis => 'skipped',
                  errors_ok => 1, 'an uncached app sees the failure');
    $pg->start;
};

subtest 'other paths go to the wrapped app' => sub {
    my $h = new_app(db => {%db});
    my $r = probe($h, path => '/');
    is $r->{code}, 200, 'status 200';
    is $r->{body}, 'app', 'from the wrapped app';
    is_deeply $r->{log}, [], 'nothing logged';
};

done_testing;
