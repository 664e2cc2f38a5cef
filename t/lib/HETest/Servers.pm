package HETest::Servers;

=head1 NAME

HETest::Servers - real throw-away servers for the tests, benchmarks and
demo of RT::Extension::HealthEndpoint

=head1 SYNOPSIS

    use lib 't/lib';
    use Test::More;
    use HETest::Servers qw(:all);

    need_server(\&have_postgres, 'PostgreSQL server binaries (initdb, postgres)');

    my $pg = start_postgres();          # initdb, start, create user + database
    my %db = $pg->db_config;            # type host port name user password
    $pg->stop;  $pg->start;             # restart on the same port
    $pg->sigstop; $pg->sigcont;         # freeze / thaw the postmaster

    my $my    = start_mariadb();
    my $redis = start_redis(requirepass => 'pw');
    my $acl   = start_redis(username => 'heuser', password => 'pw');
    my $sent  = start_sentinel($redis, service => 'mymaster');
    my $stall = start_stalled_peer();   # accepts, never reads or writes
    my $junk  = start_fake_peer(reply => "hello\r\n");
    my $file  = make_sqlite(scratch_dir('sqlite') . '/rt.db');
    my $web   = start_starman(app => 'bench/soak.psgi', workers => 4,
                              inc => ['blib/lib', 'blib/arch']);

Ports, users, process spawning, and the clean-up at exit (END block,
signals, a watchdog that survives SIGKILL) come from L<HETest::Proc>, which
also documents the environment variables: HETEST_PORT_BASE (free ports from
a range), HETEST_RUN_AS, HETEST_TMPDIR, HETEST_KEEP, HETEST_READY_TIMEOUT.

=head1 WHO RUNS THE SERVERS

Servers never run as root: when the test runs as root they run as C<nobody>
(HETEST_RUN_AS; PostgreSQL refuses root anyway), otherwise as the current
user.  Each server gets its own temporary directory (under
$ENV{HETEST_TMPDIR} or the system temp dir), owned by that user, holding
its data, its config, its log and its unix sockets.  TCP servers listen on
127.0.0.1 on a free port.

=head1 FUNCTIONS

=over

=item need_server($binary_or_code, $reason)

Returns true when C<$binary_or_code> is available: a code ref is called
(true means available), a string is looked up as an executable (in PATH and
the sbin directories; a path containing a slash is tested as is).  When it is
missing: outside CI the test (or the current subtest) is skipped with
C<$reason>; with C<CI=true> a missing server is an error: one failing test
naming the reason, and the script exits non-zero.

=item have_postgres, have_mariadb, have_redis, have_ipv6

Availability checks for need_server.  have_ipv6 is true when a socket can be
bound to [::1].

=item start_postgres(%opt)

initdb (C<--auth=scram-sha-256>, superuser password from a password file),
starts C<postgres> on 127.0.0.1:free port with its unix socket in
C<socket_dir>, creates a login role and a database it owns.  Options and
their defaults: user => 'heuser', password => 'he-pg-secret', dbname =>
'hedb' (C<< user => undef >>: no role, no database), superuser =>
'postgres', superpassword => 'he-pg-super', settings => { name => value }
(over the defaults max_connections 40, shared_buffers 16MB, fsync off, ...).
The binaries come from the newest /usr/lib/postgresql/*/bin, or
$ENV{HETEST_PG_BINDIR}.

Accessors: host ('127.0.0.1'), port, socket_dir, user, password, dbname,
superuser, superpassword, dir, pid.  C<< db_config(%override) >> returns
the list (type => 'Pg', host, port, name, user, password, %override) for
C<< wrap(db => {...}) >>.  C<< psql(@sql) >> runs statements as the
superuser.

=item start_mariadb(%opt)

C<mariadb-install-db --auth-root-authentication-method=normal> into a temp
datadir, then C<mariadbd --no-defaults --user=... --datadir --socket --port
--bind-address=127.0.0.1 --skip-name-resolve>; creates the user (for '%'
and 'localhost') and a database.  Options: user => 'heuser', password =>
'he-my-secret', dbname => 'hedb'.  Accessors: host, port, socket (the
socket file), user, password, dbname, dir, pid.  C<< db_config(%override) >>
gives type => 'mysql' plus the TCP coordinates.

=item start_redis(%opt)

A redis-server (or $ENV{HETEST_REDIS_SERVER}) with a generated config: port
on 127.0.0.1 (and [::1] when the machine has it), a unix socket C<sock> in
its temp dir, no persistence.  Options: requirepass => 'pw' (legacy AUTH
password); username => 'u', password => 'pw' (an ACL user via a C<user>
directive, and the default user switched off so that unauthenticated
clients get NOAUTH).  Accessors: host, port, addr ('127.0.0.1:port'), sock,
username, password, dir, pid.  C<< redis_config(%override) >> returns
(server => addr, plus username and password when set, %override).
C<< command(@cmd) >> sends one command, without authenticating.

=item start_sentinel($master, %opt)

C<redis-server --sentinel> with a config monitoring C<$master> under the
name C<service> (default 'mymaster'); passes the master's credentials with
C<sentinel auth-pass>/C<auth-user>.  Ready once it answers
C<SENTINEL get-master-addr-by-name>.  Accessors: host, port, addr, service.

=item start_stalled_peer(%opt)

A forked process listening on 127.0.0.1:free port that accepts connections
but never reads or writes.  Accessors: host, port, addr, pid; stop.

=item start_fake_peer(reply => $bytes)

Like start_stalled_peer, but writes C<$bytes> back each time it receives
something (e.g. "hello\r\n" or "-ERR x\r\n" to impersonate a broken Redis).
With C<greeting =E<gt> $bytes> it writes that as soon as it accepts.

=item start_starman(%opt)

Starman serving C<app> (a .psgi file) on C<host> (127.0.0.1):C<port> (a
free one) with C<workers> (2) workers, run by this perl with C<-I> for each
of C<inc>, extra Starman options in C<args>, C<env>, C<prefix> (a command to
run it under, e.g. valgrind), its log in C<log> (default starman.log in
C<dir>, default a new server dir).  C<cmd> replaces the whole command (e.g.
RT's rt-server, which starts Starman itself) and then needs C<port>.  As the
server user unless C<< as_user => 0 >>.  Ready when C<ready> (a code ref,
called with the server object) returns true, else when the port accepts
connections, within C<ready_timeout> seconds (HETEST_READY_TIMEOUT).  Accessors as above plus workers, and
C<worker_pids> (the master's children).

=item free_port(), closed_port(), scratch_dir($tag), find_binary($name), server_user()

From L<HETest::Proc>, exported here too.

=item make_sqlite($path)

Creates an SQLite database file with one table and one row (DBD::SQLite when
installed, else the sqlite3 command) and returns $path.

=item resp_command(%arg)

A minimal RESP client for set-up and readiness checks: host/port or sock,
cmd => [...], timeout; password (and username) to send AUTH first, database
to SELECT first.  Returns the decoded reply (string, integer, array ref,
undef for nil, { error => 'text' } for an error reply, also of AUTH or
SELECT); dies on I/O errors and timeouts.

=back

All server objects are L<HETest::Proc> server objects: C<start> (start again
on the same port after a stop; waits for readiness), C<stop> (idempotent;
sends SIGCONT first so a frozen server can shut down), C<sigstop>,
C<sigcont>, C<pid>, C<dir>, C<running>, C<log_tail($lines)>.  Start-up polls
readiness for at most HETEST_READY_TIMEOUT seconds (20) and dies with the
tail of the server's log on timeout or early exit.

=cut

use strict;
use warnings;

use Carp qw(croak);
use Exporter qw(import);
use IO::Select;
use POSIX qw(WNOHANG);
use IO::Socket::INET;
use Socket qw(SOCK_STREAM);
use Test::More ();
use Time::HiRes ();

use HETest::Proc qw(free_port closed_port scratch_dir find_binary server_user
                    server_dir write_file own run_cmd fork_server);

our @EXPORT_OK = qw(
    need_server have_postgres start_standby have_mariadb have_redis have_ipv6
    start_postgres start_mariadb start_redis start_sentinel
    start_stalled_peer start_fake_peer start_scripted_peer start_fake_pg
    start_starman start_fastcgi have_fastcgi
    free_port closed_port make_sqlite scratch_dir resp_command
    find_binary server_user
);
our %EXPORT_TAGS = (all => \@EXPORT_OK);

# ---------------------------------------------------------------------------
# availability

sub _first_binary { for (@_) { my $p = find_binary($_); return $p if $p } undef }

sub need_server {
    my ($what, $reason) = @_;
    my $ok = ref $what eq 'CODE' ? eval { $what->() } : find_binary($what);
    return $ok if $ok;
    $reason //= "$what is not available";
    if (($ENV{CI} // '') eq 'true') {
        my $tb = Test::More->builder;
        $tb->plan(tests => 1) unless $tb->has_plan;
        $tb->ok(0, "required for this test (CI=true, so not skipped): $reason");
        exit 255;
    }
    Test::More::plan(skip_all => $reason);
}

sub _pg_bindir {
    my @cand;
    # HETEST_PG_BIN is what HETest::RT used to read
    push @cand, grep { $_ } @ENV{qw(HETEST_PG_BINDIR HETEST_PG_BIN)};
    push @cand, map { $_->[1] }
                sort { $b->[0] <=> $a->[0] }
                map { m{/postgresql/(\d+)/bin$} ? [$1, $_] : () }
                glob '/usr/lib/postgresql/*/bin';
    for my $d (@cand) {
        return $d if -x "$d/postgres" && -x "$d/initdb";
    }
    my $p = find_binary('postgres') or return undef;
    (my $d = $p) =~ s{/[^/]+$}{};
    return -x "$d/initdb" ? $d : undef;
}

sub _pg_tool {
    my ($bindir, $tool) = @_;
    return -x "$bindir/$tool" ? "$bindir/$tool" : find_binary($tool);
}

sub have_postgres {
    my $d = _pg_bindir() or return 0;
    return _pg_tool($d, 'psql') && _pg_tool($d, 'pg_isready') ? 1 : 0;
}

sub _mariadb_binaries {
    my %b = (
        server  => _first_binary(qw(mariadbd mysqld)),
        install => _first_binary(qw(mariadb-install-db mysql_install_db)),
        client  => _first_binary(qw(mariadb mysql)),
    );
    return (grep { !$_ } values %b) ? () : %b;
}

sub _redis_server { $ENV{HETEST_REDIS_SERVER} || find_binary('redis-server') }

sub have_mariadb { scalar(my @b = _mariadb_binaries()) ? 1 : 0 }
sub have_redis   { _redis_server() ? 1 : 0 }

sub have_ipv6 {
    require IO::Socket::IP;
    my $s = IO::Socket::IP->new(LocalHost => '::1', LocalPort => 0,
                                Listen => 1, Proto => 'tcp');
    return $s ? 1 : 0;
}

# ---------------------------------------------------------------------------
# PostgreSQL

package HETest::Servers::Postgres;
our @ISA = ('HETest::Proc::Server');

sub socket_dir    { $_[0]{socket_dir} }
sub dbname        { $_[0]{dbname} }
sub superuser     { $_[0]{superuser} }
sub superpassword { $_[0]{superpassword} }

sub db_config {
    my ($self, %o) = @_;
    return (type => 'Pg', host => $self->{host}, port => $self->{port},
            name => $self->{dbname}, user => $self->{user},
            password => $self->{password}, %o);
}

sub _ready {
    my ($self) = @_;
    local $?;
    my $isready = $self->{pg_isready};
    system { $isready } $isready, '-q', '-t', '1', '-h', $self->{host},
        '-p', $self->{port}, '-d', 'postgres';
    return $? == 0;
}

# Run SQL statements as the superuser, each in its own psql -c.
sub psql {
    my ($self, @sql) = @_;
    HETest::Proc::run_cmd(
        cmd => [ $self->{psql}, '-X', '-q', '-v', 'ON_ERROR_STOP=1',
                 '-h', $self->{host}, '-p', $self->{port},
                 '-U', $self->{superuser}, '-d', 'postgres',
                 map { ('-c', $_) } @sql ],
        log => "$self->{dir}/psql.log", as_user => 0,
        env => { PGPASSWORD => $self->{superpassword}, PGCONNECT_TIMEOUT => 5,
                 PGSSLMODE => 'disable', PGSERVICE => undef, PGHOST => undef,
                 PGPORT => undef, PGUSER => undef, PGDATABASE => undef,
                 PGOPTIONS => undef },
        timeout => 60,
    );
}

package HETest::Servers;

sub start_postgres {
    my (%o) = (user => 'heuser', password => 'he-pg-secret', dbname => 'hedb',
               superuser => 'postgres', superpassword => 'he-pg-super', @_);
    my $bindir = _pg_bindir() or croak "PostgreSQL server binaries not found";
    my $dir = server_dir('pg');
    my %set = (
        fsync => 'off', full_page_writes => 'off', synchronous_commit => 'off',
        max_connections => 40, shared_buffers => '16MB',
        logging_collector => 'off', log_connections => 'on',
        unix_socket_permissions => '0777',
        password_encryption => 'scram-sha-256',
        %{ delete $o{settings} || {} },
    );
    my $self = HETest::Servers::Postgres->_new(
        name => 'postgres', dir => $dir, host => '127.0.0.1',
        log => "$dir/postgres.log", stop_signal => 'INT',   # fast shutdown
        socket_dir => "$dir/sock", bindir => $bindir,
        psql => _pg_tool($bindir, 'psql'),
        pg_isready => _pg_tool($bindir, 'pg_isready'),
        extra_logs => ["$dir/initdb.log", "$dir/psql.log"],
        %o,
    );
    mkdir "$dir/sock", 0700 or croak "mkdir $dir/sock: $!";
    own("$dir/sock", write_file("$dir/pwfile", "$o{superpassword}\n"));
    run_cmd(cmd => [ "$bindir/initdb", '-D', "$dir/data", '-U', $o{superuser},
                     '--auth=scram-sha-256', "--pwfile=$dir/pwfile",
                     '--no-locale', '-E', 'UTF8', '--no-sync' ],
            log => "$dir/initdb.log", dir => $dir);
    $self->{port} = free_port();
    $self->{cmd} = [
        "$bindir/postgres", '-D', "$dir/data", '-p', $self->{port},
        '-k', "$dir/sock", '-h', '127.0.0.1',
        map { ('-c', "$_=$set{$_}") } sort keys %set,
    ];
    $self->start;
    $self->psql(
        qq{CREATE ROLE "$o{user}" LOGIN PASSWORD '$o{password}'},
        qq{CREATE DATABASE "$o{dbname}" OWNER "$o{user}"},
    ) if defined $o{user};
    return $self;
}

# A hot standby of $primary (pg_basebackup -R: streaming replication, read
# only), on a port of its own.  Same accessors as the primary.
sub start_standby {
    my ($primary) = @_;
    my $bindir = $primary->{bindir};
    my $dir = server_dir('pgstandby');
    my $self = HETest::Servers::Postgres->_new(
        %$primary, pid => undef, name => 'postgres standby', dir => $dir,
        log => "$dir/postgres.log", socket_dir => "$dir/sock",
        extra_logs => ["$dir/basebackup.log"],
    );
    mkdir "$dir/sock", 0700 or croak "mkdir $dir/sock: $!";
    own("$dir/sock");
    run_cmd(cmd => [ _pg_tool($bindir, 'pg_basebackup'), '-D', "$dir/data",
                     '-R', '-X', 'stream', '--no-sync', '-h', '127.0.0.1',
                     '-p', $primary->port, '-U', $primary->superuser ],
            env => { PGPASSWORD => $primary->superpassword },
            log => "$dir/basebackup.log", dir => $dir);
    $self->{port} = free_port();
    my @cmd = @{ $primary->{cmd} };
    for my $i (0 .. $#cmd - 1) {        # the primary's command, our paths
        $cmd[$i + 1] = "$dir/data" if $cmd[$i] eq '-D';
        $cmd[$i + 1] = $self->{port} if $cmd[$i] eq '-p';
        $cmd[$i + 1] = "$dir/sock" if $cmd[$i] eq '-k';
    }
    $self->{cmd} = [ @cmd, '-c', 'hot_standby=on' ];
    $self->start;
    return $self;
}

# ---------------------------------------------------------------------------
# MariaDB

package HETest::Servers::MariaDB;
our @ISA = ('HETest::Proc::Server');

sub socket { $_[0]{socket} }
sub dbname { $_[0]{dbname} }

sub db_config {
    my ($self, %o) = @_;
    return (type => 'mysql', host => $self->{host}, port => $self->{port},
            name => $self->{dbname}, user => $self->{user},
            password => $self->{password}, %o);
}

sub _client_cmd {
    my ($self, @sql) = @_;
    return [ $self->{client}, '--no-defaults', '--protocol=socket',
             "--socket=$self->{socket}", '--user=root', '--connect-timeout=2',
             '--batch', '--execute=' . join(' ', @sql) ];
}

sub _ready {
    my ($self) = @_;
    return 0 unless -S $self->{socket};
    local $?;
    my $cmd = $self->_client_cmd('SELECT 1');
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', '/dev/null';
        open STDERR, '>', '/dev/null';
        { exec { $cmd->[0] } @$cmd }
        POSIX::_exit(127);
    }
    waitpid $pid, 0;
    return $? == 0;
}

sub sql {
    my ($self, @sql) = @_;
    HETest::Proc::run_cmd(cmd => $self->_client_cmd(@sql),
                          log => "$self->{dir}/client.log", as_user => 0,
                          timeout => 60);
}

package HETest::Servers;

sub start_mariadb {
    my (%o) = (user => 'heuser', password => 'he-my-secret', dbname => 'hedb',
               @_);
    my %bin = _mariadb_binaries() or croak "MariaDB binaries not found";
    my %u = server_user();
    my $dir = server_dir('my');
    my $self = HETest::Servers::MariaDB->_new(
        name => 'mariadbd', dir => $dir, host => '127.0.0.1',
        log => "$dir/mariadbd.log", socket => "$dir/mysqld.sock",
        client => $bin{client},
        extra_logs => ["$dir/install.log", "$dir/client.log"],
        %o,
    );
    mkdir "$dir/tmp", 0700 or croak "mkdir $dir/tmp: $!";
    own("$dir/tmp");
    run_cmd(cmd => [ $bin{install}, '--no-defaults',
                     '--auth-root-authentication-method=normal',
                     "--datadir=$dir/data", '--skip-test-db',
                     "--user=$u{name}" ],
            log => "$dir/install.log", dir => $dir);
    $self->{port} = free_port();
    $self->{cmd} = [
        $bin{server}, '--no-defaults', "--user=$u{name}",
        "--datadir=$dir/data", "--socket=$dir/mysqld.sock",
        "--port=$self->{port}", '--bind-address=127.0.0.1',
        '--skip-name-resolve', "--pid-file=$dir/mysqld.pid",
        "--tmpdir=$dir/tmp", '--skip-log-bin',
        '--innodb-buffer-pool-size=16M', '--innodb-log-file-size=8M',
        '--innodb-flush-log-at-trx-commit=0', '--innodb-use-native-aio=0',
        '--max-connections=50', '--skip-external-locking',
    ];
    $self->start;
    my ($user, $pw, $db) = @o{qw(user password dbname)};
    $self->sql(
        "CREATE USER '$user'\@'%' IDENTIFIED BY '$pw';",
        "CREATE USER '$user'\@'localhost' IDENTIFIED BY '$pw';",
        "CREATE DATABASE `$db`;",
        "GRANT ALL ON `$db`.* TO '$user'\@'%';",
        "GRANT ALL ON `$db`.* TO '$user'\@'localhost';",
    );
    return $self;
}

# ---------------------------------------------------------------------------
# Redis and Sentinel

package HETest::Servers::Redis;
our @ISA = ('HETest::Proc::Server');

sub username { $_[0]{username} }
sub service  { $_[0]{service} }

sub redis_config {
    my ($self, %o) = @_;
    return (server => $self->addr,
            (defined $self->{username} ? (username => $self->{username}) : ()),
            (defined $self->{password} ? (password => $self->{password}) : ()),
            %o);
}

sub command {
    my ($self, @cmd) = @_;
    return HETest::Servers::resp_command(host => $self->{host},
        port => $self->{port}, cmd => \@cmd, timeout => 2);
}

sub _ready {
    my ($self) = @_;
    if ($self->{sentinel_of}) {
        my $r = $self->command('SENTINEL', 'get-master-addr-by-name',
                               $self->{service});
        return ref $r eq 'ARRAY' && defined $r->[1]
            && $r->[1] == $self->{sentinel_of}->port;
    }
    my $r = $self->command('PING');   # +PONG, or -NOAUTH: both say "ready"
    return defined $r;
}

package HETest::Servers;

# Start a redis-server with these config lines (plus port, dir and the
# settings every one of ours has) in its server dir.
sub _start_redis_conf {
    my ($dir, $conf, $lines, %f) = @_;
    my $bin = _redis_server() or croak "redis-server not found";
    my $self = HETest::Servers::Redis->_new(dir => $dir, host => '127.0.0.1',
                                            port => free_port(), %f);
    # owned by the server user: sentinel rewrites its config file
    own(write_file("$dir/$conf", join "\n", "port $self->{port}", "dir $dir",
                   'logfile ""', 'daemonize no', @$lines, ''));
    $self->{cmd} = [ $bin, "$dir/$conf", ($f{sentinel_of} ? '--sentinel' : ()) ];
    return $self->start;
}

sub start_redis {
    my (%o) = @_;
    croak "start_redis: username needs a password"
        if defined $o{username} && !defined $o{password};
    my $dir = server_dir('redis');
    return _start_redis_conf($dir, 'redis.conf', [
        'bind 127.0.0.1' . (have_ipv6() ? ' -::1' : ''),
        'protected-mode no',
        "unixsocket $dir/redis.sock",
        'unixsocketperm 700',
        'save ""',
        'appendonly no',
        'databases 16',
        (defined $o{requirepass} ? "requirepass $o{requirepass}" : ()),
        (defined $o{username}
            ? ('user default off',
               "user $o{username} on >$o{password} ~* &* +\@all")
            : ()),
    ],
        name => 'redis-server', log => "$dir/redis.log",
        sock => "$dir/redis.sock",
        (defined $o{requirepass} ? (password => $o{requirepass}) : ()),
        (defined $o{username} ? (username => $o{username},
                                 password => $o{password}) : ()),
    );
}

sub start_sentinel {
    my ($master, %o) = @_;
    my $service = $o{service} // 'mymaster';
    my $dir = server_dir('sentinel');
    return _start_redis_conf($dir, 'sentinel.conf', [
        'bind 127.0.0.1',
        'protected-mode no',
        "sentinel monitor $service $master->{host} $master->{port} 1",
        "sentinel down-after-milliseconds $service 60000",
        (defined $master->{password}
            ? "sentinel auth-pass $service $master->{password}" : ()),
        (defined $master->{username}
            ? "sentinel auth-user $service $master->{username}" : ()),
    ],
        name => 'redis-sentinel', log => "$dir/sentinel.log",
        service => $service, sentinel_of => $master,
    );
}

# Minimal RESP client.
sub resp_command {
    my (%a) = @_;
    my $timeout = $a{timeout} // 2;
    my $sock;
    if (defined $a{sock}) {
        require IO::Socket::UNIX;
        $sock = IO::Socket::UNIX->new(Peer => $a{sock}, Type => SOCK_STREAM)
            or die "connect $a{sock}: $!\n";
    }
    else {
        require IO::Socket::IP;
        $sock = IO::Socket::IP->new(PeerHost => $a{host}, PeerPort => $a{port},
                                    Proto => 'tcp', Timeout => $timeout)
            or die "connect $a{host}:$a{port}: $@\n";
    }
    my @cmds = (
        (defined $a{password}
            ? [ 'AUTH', (defined $a{username} ? $a{username} : ()),
                $a{password} ] : ()),
        ($a{database} ? [ 'SELECT', $a{database} ] : ()),
        $a{cmd},
    );
    my $req = join '', map {
        '*' . @$_ . "\r\n" . join('', map { '$' . length($_) . "\r\n$_\r\n" } @$_)
    } @cmds;
    my $deadline = Time::HiRes::time() + $timeout;
    my $sel = IO::Select->new($sock);
    $sel->can_write($timeout) or die "write timeout\n";
    syswrite($sock, $req) == length $req or die "write: $!\n";
    my $buf = '';
    my $fill = sub {
        my $left = $deadline - Time::HiRes::time();
        die "read timeout\n" if $left <= 0 || !$sel->can_read($left);
        my $n = sysread($sock, $buf, 65536, length $buf);
        die "read: " . (defined $n ? 'connection closed' : $!) . "\n"
            unless $n;
    };
    my $line = sub {
        while ((my $i = index($buf, "\r\n")) < 0) { $fill->() }
        my $i = index($buf, "\r\n");
        my $l = substr($buf, 0, $i);
        substr($buf, 0, $i + 2, '');
        return $l;
    };
    my $parse;
    $parse = sub {
        my $l = $line->();
        my ($t, $v) = (substr($l, 0, 1), substr($l, 1));
        return $v if $t eq '+';
        return { error => $v } if $t eq '-';
        return 0 + $v if $t eq ':';
        if ($t eq '$') {
            return undef if $v < 0;
            $fill->() while length($buf) < $v + 2;
            my $s = substr($buf, 0, $v);
            substr($buf, 0, $v + 2, '');
            return $s;
        }
        if ($t eq '*') {
            return undef if $v < 0;
            return [ map { $parse->() } 1 .. $v ];
        }
        die "bad RESP reply: $l\n";
    };
    my $reply;
    for my $i (0 .. $#cmds) {
        $reply = $parse->();
        last if ref $reply eq 'HASH';   # AUTH or SELECT refused
    }
    undef $parse;
    close $sock;
    return $reply;
}

# ---------------------------------------------------------------------------
# fake peers

package HETest::Servers::Peer;
our @ISA = ('HETest::Proc::Server');

sub start { Carp::croak("a fake peer cannot be restarted") unless $_[0]{pid}; $_[0] }

package HETest::Servers;

# A listening socket on 127.0.0.1, and its port, for a peer of ours.
sub _peer_socket {
    my $port = free_port();
    my $listen = IO::Socket::INET->new(
        LocalAddr => '127.0.0.1', LocalPort => $port, Proto => 'tcp',
        Listen => 64, ReuseAddr => 1,
    ) or croak "listen on 127.0.0.1:$port: $!";
    return ($listen, $port);
}

# A peer process on its own loopback port: serve->($listen, $parent) runs
# in it (SIGPIPE ignored) until the test process is gone.
sub _peer {
    my (%o) = @_;
    my ($listen, $port) = _peer_socket();
    my $parent = $$;
    my $pid = fork_server(stop_signal => 'KILL');
    if ($pid == 0) {
        $SIG{PIPE} = 'IGNORE';
        $o{serve}->($listen, $parent);
        POSIX::_exit(0);
    }
    close $listen;
    return HETest::Servers::Peer->_new(name => $o{name},
        host => '127.0.0.1', port => $port, pid => $pid, stop_signal => 'KILL');
}

sub start_fake_peer {
    my (%o) = @_;
    return _peer(name => defined $o{reply} ? 'fake peer' : 'stalled peer',
                 serve => sub {
        my ($listen, $parent) = @_;
        my $sel = IO::Select->new($listen);
        my @keep;                       # stalled connections stay open
        my $until = time + 900;         # stops by itself in any case
        while (time < $until && getppid() == $parent) {
            for my $fh ($sel->can_read(0.5)) {
                if ($fh == $listen) {
                    my $c = $listen->accept or next;
                    syswrite $c, $o{greeting} if defined $o{greeting};
                    if (defined $o{reply}) { $sel->add($c) }
                    else                   { push @keep, $c }
                    next;
                }
                my $n = sysread $fh, my $buf, 65536;
                if (!$n) { $sel->remove($fh); close $fh; next }
                syswrite $fh, $o{reply};
            }
        }
    });
}

sub start_stalled_peer { start_fake_peer(@_, reply => undef) }

# A peer that runs serve->($socket) for each connection, in a process of
# its own (so a handler may stream or sleep as long as it likes).
sub start_scripted_peer {
    my (%o) = @_;
    return _peer(name => 'scripted peer', serve => sub {
        my ($listen, $parent) = @_;
        open STDOUT, '>', '/dev/null';  # a test harness waits for its holders
        open STDERR, '>', '/dev/null';
        my $sel = IO::Select->new($listen);
        while (getppid() == $parent) {
            next unless $sel->can_read(0.5);
            my $c = $listen->accept or next;
            my $k = fork;
            if (defined $k && $k == 0) {
                alarm 60;               # a handler never outlives a test
                eval { $o{serve}->($c) };
                POSIX::_exit(0);
            }
            close $c;
            1 while waitpid(-1, WNOHANG) > 0;
        }
        kill 'KILL', -$$;               # the handlers, with us
    });
}

# A "PostgreSQL" that lies, over the real protocol: refuses SSL/GSS, then
# asks for SCRAM with scram_iterations (a huge count keeps libpq's key
# derivation busy), or logs in and sends a DataRow of datarow bytes.
sub start_fake_pg {
    my (%o) = @_;
    return start_scripted_peer(serve => sub {
        my ($c) = @_;
        _pg_startup($c);
        if ($o{scram_iterations}) {
            syswrite $c, _pg_msg('R', pack('N', 10) . "SCRAM-SHA-256\0\0");
            my (undef, $body) = _pg_read_msg($c);
            my ($nonce) = $body =~ /r=([^,\0]+)/ or die "no client nonce\n";
            syswrite $c, _pg_msg('R', pack('N', 11) . "r=${nonce}srvnonce,"
                . "s=c2FsdHNhbHRzYWx0c2FsdA==,i=$o{scram_iterations}");
            sleep 60;
        }
        syswrite $c, _pg_msg('R', pack 'N', 0) . _pg_msg('Z', 'I');
        _pg_read_msg($c);               # the query
        syswrite $c, _pg_msg('T', pack('n', 1) . "x\0"
            . pack('NnNnNn', 0, 0, 23, 4, -1, 0));
        syswrite $c, 'D' . pack('N', $o{datarow} + 10) . pack('n', 1)
            . pack('N', $o{datarow});
        my $chunk = 'x' x 65536;
        1 while defined syswrite $c, $chunk;
    });
}

sub _pg_read_n {
    my ($c, $n) = @_;
    my $buf = '';
    while (length $buf < $n) {
        my $r = sysread $c, $buf, $n - length $buf, length $buf;
        die "peer closed\n" unless $r;
    }
    return $buf;
}

sub _pg_read_msg {
    my ($c) = @_;
    my $type = _pg_read_n($c, 1);
    return ($type, _pg_read_n($c, unpack('N', _pg_read_n($c, 4)) - 4));
}

sub _pg_msg { my ($type, $body) = @_; $type . pack('N', 4 + length $body) . $body }

# The startup packet, after answering SSL and GSS requests with 'N'.
sub _pg_startup {
    my ($c) = @_;
    while (1) {
        my $len = unpack 'N', _pg_read_n($c, 4);
        my $code = unpack 'N', _pg_read_n($c, $len - 4);
        return unless $code == 80877103 || $code == 80877104;
        syswrite $c, 'N';
    }
}

# ---------------------------------------------------------------------------
# Starman

package HETest::Servers::Starman;
our @ISA = ('HETest::Proc::Server');

sub workers { $_[0]{workers} }

# Starman's workers: the children of its master process.
sub worker_pids {
    my ($self) = @_;
    my $pid = $self->{pid} or return ();
    open my $fh, '<', "/proc/$pid/task/$pid/children" or return ();
    my @pids = sort { $a <=> $b } split ' ', scalar(<$fh>) // '';
    return @pids;                       # (a count in scalar context)
}

sub _ready {
    my ($self) = @_;
    return $self->{ready}->($self) if $self->{ready};
    return HETest::Proc::port_open($self->{port}, $self->{host});
}

package HETest::Servers;

sub start_starman {
    my (%o) = (host => '127.0.0.1', workers => 2, name => 'starman', @_);
    croak "start_starman: app or cmd" unless $o{app} || $o{cmd};
    croak "start_starman: cmd needs port" if $o{cmd} && !$o{port};
    $o{port} //= free_port();
    $o{dir} //= ($o{as_user} // 1) ? server_dir('starman')
                                   : scratch_dir('starman');
    $o{log} //= "$o{dir}/starman.log";
    $o{cmd} //= do {
        my $starman = find_binary('starman') or croak "starman not found";
        [ @{ $o{prefix} || [] }, $^X, (map { "-I$_" } @{ $o{inc} || [] }),
          $starman, '--workers', $o{workers},
          '--listen', "$o{host}:$o{port}", @{ $o{args} || [] }, $o{app} ];
    };
    return HETest::Servers::Starman->_new(%o)->start;
}

# ---------------------------------------------------------------------------
# FastCGI processes started one by one (as mod_fcgid or spawn-fcgi do),
# behind nginx

package HETest::Servers::FastCGI;
our @ISA = ('HETest::Proc::Server');

sub ports { @{ $_[0]{ports} } }
sub _ready { HETest::Proc::port_open($_[0]->port) }

# Stop the FastCGI processes (TERM) and start them again, perhaps with
# another environment: what a restart of rt5-fcgi does.
sub restart {
    my ($self, %env) = @_;
    kill 'TERM', @{ $self->{fcgi_pids} };
    waitpid $_, 0 for @{ $self->{fcgi_pids} };
    HETest::Proc::unwatch($_) for @{ $self->{fcgi_pids} };
    $self->{env} = { %{ $self->{env} }, %env };
    HETest::Servers::_start_fcgis($self);
    return $self;
}

sub stop {
    my ($self) = @_;
    kill 'TERM', @{ $self->{fcgi_pids} || [] };
    waitpid $_, 0 for @{ $self->{fcgi_pids} || [] };
    HETest::Proc::unwatch($_) for @{ $self->{fcgi_pids} || [] };
    $self->{fcgi_pids} = [];
    return $self->SUPER::stop;
}

package HETest::Servers;

sub have_fastcgi {
    return find_binary('nginx') && find_binary('plackup')
        && eval { require Plack::Handler::FCGI; 1 } ? 1 : 0;
}

sub _start_fcgis {
    my ($self) = @_;
    my @pids;
    for my $p (@{ $self->{ports} }) {
        push @pids, HETest::Proc::spawn(
            cmd => [ $^X, (map { "-I$_" } @{ $self->{inc} || [] }),
                     find_binary('plackup'), '-s', 'FCGI', '--listen',
                     "127.0.0.1:$p", '-E', 'deployment', $self->{app} ],
            env => $self->{env}, log => "$self->{dir}/fcgi-$p.log",
            as_user => $self->{as_user} // 1, stop_signal => 'TERM');
    }
    $self->{fcgi_pids} = \@pids;
    for my $p (@{ $self->{ports} }) {
        my $until = Time::HiRes::time() + 30;
        Time::HiRes::sleep(0.1)
            until HETest::Proc::port_open($p) || Time::HiRes::time() > $until;
        croak "FastCGI process on port $p did not start:\n"
            . (HETest::Proc::log_tail("$self->{dir}/fcgi-$p.log", 20) // '')
            unless HETest::Proc::port_open($p);
    }
}

# n (4) FastCGI processes of app (plackup -s FCGI), each started on its
# own, and nginx on a free port passing every request to them in turn.
# env and inc are for the FastCGI processes.  $s->port is nginx's.
sub start_fastcgi {
    my (%o) = (n => 4, @_);
    my $nginx = find_binary('nginx') or croak 'nginx not found';
    my $dir = $o{dir} // server_dir('fcgi');
    my $self = HETest::Servers::FastCGI->_new(
        name => 'nginx + FastCGI', dir => $dir, host => '127.0.0.1',
        log => "$dir/nginx.out", extra_logs => ["$dir/nginx-error.log"],
        stop_signal => 'QUIT',
        app => $o{app}, env => $o{env} || {}, inc => $o{inc},
        as_user => $o{as_user}, ports => [ map { free_port() } 1 .. $o{n} ],
    );
    _start_fcgis($self);
    $self->{port} = free_port();
    write_file("$dir/nginx.conf", <<"CONF");
daemon off;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/nginx-error.log;
events { worker_connections 256; }
http {
    access_log off;
@{[ HETest::Proc::nginx_temp_paths($dir) ]}    upstream fcgi {
@{[ map { "        server 127.0.0.1:$_;\n" } @{ $self->{ports} } ]}    }
    server {
        listen 127.0.0.1:$self->{port};
        location / {
            include /etc/nginx/fastcgi_params;
            fastcgi_param SCRIPT_NAME "";
            fastcgi_param PATH_INFO \$uri;
            fastcgi_pass fcgi;
        }
    }
}
CONF
    own("$dir/nginx.conf") if $o{as_user} // 1;
    $self->{cmd} = [ $nginx, '-c', "$dir/nginx.conf", '-p', $dir ];
    $self->{as_user} = $o{as_user};
    return $self->start;
}

# ---------------------------------------------------------------------------
# SQLite

sub make_sqlite {
    my ($path) = @_;
    croak "make_sqlite: $path exists" if -e $path;
    my @sql = ('CREATE TABLE he_test (id INTEGER PRIMARY KEY, v TEXT)',
               "INSERT INTO he_test (v) VALUES ('hello')");
    if (eval { require DBI; require DBD::SQLite; 1 }) {
        my $dbh = DBI->connect("dbi:SQLite:dbname=$path", '', '',
                               { RaiseError => 1, PrintError => 0 });
        $dbh->do($_) for @sql;
        $dbh->disconnect;
    }
    else {
        my $cli = find_binary('sqlite3')
            or croak "make_sqlite needs DBD::SQLite or the sqlite3 command";
        local $?;
        system { $cli } $cli, $path, join(';', @sql) . ';';
        croak "sqlite3 $path failed: $?" if $?;
    }
    croak "make_sqlite: $path was not created" unless -s $path;
    return $path;
}

1;
