#!perl
# The MySQL/MariaDB check against a real, throw-away MariaDB server, with
# both type names: TCP, the unix socket (mysql_socket in DatabaseExtraDSN),
# failures logged with the server's reason (never in the body), restart,
# HEAD.
use strict;
use warnings;

use lib 't/lib';
use POSIX ();
use Test::More;
use HETest::Servers qw(:all);
use HETest::Util qw(:all);
use RT::Extension::HealthEndpoint;
use HEBuild qw(skip_all_if_omitted);

skip_all_if_omitted('mysql');
need_server(sub { grep { $_ eq 'mysql' } RT::Extension::HealthEndpoint::backends() },
            'RT::Extension::HealthEndpoint was built without the mysql backend');
need_server(\&have_mariadb,
            'MariaDB server binaries (mariadbd, mariadb-install-db, mariadb)');

my $my = start_mariadb();
note 'MariaDB on ' . $my->addr . ', socket ' . $my->socket;

for my $type (qw(mysql MariaDB)) {
    my %db = $my->db_config(type => $type);   # 127.0.0.1:port, name, user, password

    subtest "$type: TCP" => sub {
        expect_status(status_of(db => {%db}),
                      database => 'ok', redis => 'skipped', 'ok over TCP');
    };

    subtest "$type: unix socket" => sub {
        my %sock = (extra => { mysql_socket => $my->socket });
        expect_status(status_of(db => {%db, host => 'localhost', port => undef, %sock}),
                      database => 'ok', redis => 'skipped',
                      'host localhost + mysql_socket: ok');
        expect_status(status_of(db => {%db, host => undef, port => undef, %sock}),
                      database => 'ok', redis => 'skipped',
                      'no host + mysql_socket: ok');

        my $r = status_of(db => {%db, host => undef, port => undef,
                                 extra => { mysql_socket => $my->dir . '/nope.sock' }});
        expect_status($r, database => 'fail', redis => 'skipped',
                      'a socket path where nothing listens: fail');
        logged_error($r, qr/database check failed.*nope\.sock/s,
                     'the socket is named in the log');
    };

    subtest "$type: wrong password" => sub {
        my $r = status_of(db => {%db, password => 'not-the-password'});
        expect_status($r, database => 'fail', redis => 'skipped', '503, database fail');
        logged_error($r, qr/database check failed.*Access denied for user/s,
                     'the server message is logged');
        unlike $r->{body}, qr/denied/, 'no error text in the body';

        $r = status_of(db => {%db, password => undef});
        expect_status($r, database => 'fail', redis => 'skipped', 'no password: fail');
        logged_error($r, qr/database check failed.*Access denied/s, 'logged');
    };

    subtest "$type: unknown database" => sub {
        my $r = status_of(db => {%db, name => 'nosuchdb'});
        expect_status($r, database => 'fail', redis => 'skipped', 'fail');
        logged_error($r, qr/database check failed.*nosuchdb/is, 'logged');
    };

    subtest "$type: extra DSN attributes the check does not need are harmless" => sub {
        my $r = status_of(db => {%db, extra => { mysql_enable_utf8 => 1 }});
        expect_status($r, database => 'ok', redis => 'skipped', 'ok');
    };

    subtest "$type: mysql_ssl against a server without TLS" => sub {
        my $r = status_of(db => {%db, extra => { mysql_ssl => 1,
                                                 mysql_ssl_verify_server_cert => 1 }});
        expect_status($r, database => 'fail', redis => 'skipped',
                      'TLS with verification required but not offered: fail');
        logged_error($r, qr/database check failed.*SSL/s, 'logged');

        # mysql_ssl=1 never falls back to clear text (MYSQL_OPT_SSL_ENFORCE
        # alone would with MariaDB Connector/C 3.3)
        $r = status_of(db => {%db, extra => { mysql_ssl => 1 }});
        expect_status($r, database => 'fail', redis => 'skipped',
                      'TLS required but not offered: fail, no clear-text fallback');
        logged_error($r, qr/database check failed/, 'logged');
    };

    subtest "$type: HEAD" => sub {
        my $h = new_app(db => {%db});
        my $get  = probe($h);
        my $head = probe($h, method => 'HEAD');
        is $head->{code}, 200, 'status 200';
        is_deeply $head->{header_list}, $get->{header_list}, 'same headers';
        is $head->{body}, '', 'empty body';
    };
}

subtest 'MariaDB spelling of the socket attribute (DBD::MariaDB)' => sub {
    # RT with DatabaseType MariaDB uses DBD::MariaDB, whose DSN attribute is
    # mariadb_socket.
    my %db = $my->db_config(type => 'MariaDB', host => undef, port => undef);
    my $r = status_of(db => {%db, extra => { mariadb_socket => $my->socket }});
    expect_status($r, database => 'ok', redis => 'skipped', 'ok');
};

subtest 'server stopped, then restarted' => sub {
    my %db = $my->db_config;
    my $h = new_app(db => {%db});
    expect_status(probe($h), database => 'ok', redis => 'skipped', 'ok while up');

    $my->stop;
    my $r = probe($h);
    expect_status($r, database => 'fail', redis => 'skipped', 'fail while down');
    logged_error($r, qr/database check failed/, 'logged');
    cmp_ok $r->{elapsed}, '<', 1.5, 'connection refused does not wait for the timeout'
        or diag describe($r);

    $my->start;
    expect_status(probe($h), database => 'ok', redis => 'skipped',
                  'ok again on the next probe after the restart');
};

subtest 'a TLS handshake that stalls (mysql_ssl=1)' => sub {
    # A "server" that offers TLS in its greeting, takes the client's SSL
    # request and then says nothing: libmariadb's handshake blocks on its
    # own; the checker's deadline answers for it.
    my $peer = start_scripted_peer(serve => sub {
        my ($c) = @_;
        my $caps = 0x1 | 0x8 | 0x200 | 0x800 | 0x8000 | 0x80000;
        my $p = pack('C', 10) . "5.7.99-stall\0" . pack('V', 7)
            . 'abcdefgh' . "\0" . pack('v', $caps & 0xffff) . pack('C', 33)
            . pack('v', 2) . pack('v', $caps >> 16) . pack('C', 21)
            . ("\0" x 10) . 'ijklmnopqrst' . "\0"
            . "mysql_native_password\0";
        syswrite $c, substr(pack('V', length $p), 0, 3) . "\0" . $p;
        sleep 60;                       # read nothing, answer nothing
    });
    my $r = status_of(timeout => 0.5, db => { type => 'mysql', host => '127.0.0.1',
        port => $peer->port, name => 'x', user => 'x', password => 'x',
        extra => { mysql_ssl => 1, mysql_ssl_optional => 0 } });
    $peer->stop;
    expect_status($r, database => 'fail', redis => 'skipped', 'the answer is 503');
    cmp_ok $r->{elapsed}, '<=', 0.5 * 1.1,
        sprintf 'within Timeout + 10 %% (%.3f s)', $r->{elapsed};
};

done_testing;
