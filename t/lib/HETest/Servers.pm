package HETest::Servers;

=head1 NAME

HETest::Servers - real throw-away servers for the tests of RT::Extension::HealthEndpoint

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

Everything started here is stopped, and every temporary directory removed,
in an END block: also when the test dies or is interrupted (SIGINT, SIGTERM
and SIGHUP are turned into an exit so that END runs).  A small watchdog
process stops the servers even when the test itself is killed with SIGKILL.
Set HETEST_KEEP=1 to keep the temporary directories (logs, data) for a
post-mortem; their paths are printed with diag.

=head1 WHO RUNS THE SERVERS

Servers never run as root: when the test runs as root they run as C<nobody>
(PostgreSQL refuses root anyway), otherwise as the current user.  Each
server gets its own temporary directory (under $ENV{HETEST_TMPDIR} or the
system temp dir), owned by that user, holding its data, its config, its log
and its unix sockets.  TCP servers listen on 127.0.0.1 on a free port.

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
'hedb', superuser => 'postgres', superpassword => 'he-pg-super'.

Accessors: host ('127.0.0.1'), port, socket_dir, user, password, dbname,
superuser, superpassword, dir, pid.  C<< db_config(%override) >> returns
the list (type => 'Pg', host, port, name, user, password, %override) for
C<< wrap(db => {...}) >>.

=item start_mariadb(%opt)

C<mariadb-install-db --auth-root-authentication-method=normal> into a temp
datadir, then C<mariadbd --no-defaults --user=... --datadir --socket --port
--bind-address=127.0.0.1 --skip-name-resolve>; creates the user (for '%'
and 'localhost') and a database.  Options: user => 'heuser', password =>
'he-my-secret', dbname => 'hedb'.  Accessors: host, port, socket (the
socket file), user, password, dbname, dir, pid.  C<< db_config(%override) >>
gives type => 'mysql' plus the TCP coordinates.

=item start_redis(%opt)

A redis-server with a generated config: port on 127.0.0.1 (and [::1] when
the machine has it), a unix socket C<sock> in its temp dir, no persistence.
Options: requirepass => 'pw' (legacy AUTH password); username => 'u',
password => 'pw' (an ACL user via a C<user> directive, and the default user
switched off so that unauthenticated clients get NOAUTH).  Accessors: host,
port, addr ('127.0.0.1:port'), sock, username, password, dir, pid.
C<< redis_config(%override) >> returns (server => addr, plus username and
password when set, %override).

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

=item free_port(), closed_port()

A currently free TCP port on 127.0.0.1 (nothing listens there, so connecting
to it is refused).  closed_port is an alias that reads better in tests.

=item make_sqlite($path)

Creates an SQLite database file with one table and one row (DBD::SQLite when
installed, else the sqlite3 command) and returns $path.

=item scratch_dir($tag)

A temporary directory for the test's own files, removed at the end.

=item resp_command(%arg)

A minimal RESP client for set-up and readiness checks: host/port or sock,
cmd => [...], timeout.  Returns the decoded reply (string, integer, array
ref, undef for nil, { error => 'text' } for an error reply); dies on I/O
errors and timeouts.

=back

All server objects share: C<start> (start again on the same port after a
stop; waits for readiness), C<stop> (idempotent; sends SIGCONT first so a
frozen server can shut down), C<sigstop>, C<sigcont>, C<pid>, C<dir>,
C<running>, C<log_tail($lines)>.  Start-up polls readiness for at most
$HETest::Servers::READY_TIMEOUT seconds (20, or $ENV{HETEST_READY_TIMEOUT})
and dies with the tail of the server's log on timeout or early exit.

=cut

use strict;
use warnings;

use Carp qw(croak);
use Exporter qw(import);
use File::Path qw(rmtree);
use File::Spec;
use File::Temp qw(tempdir);
use IO::Handle;
use IO::Select;
use IO::Socket::INET;
use POSIX qw(WNOHANG);
use Socket qw(SOCK_STREAM);
use Test::More ();
use Time::HiRes qw(sleep);

our @EXPORT_OK = qw(
    need_server have_postgres have_mariadb have_redis have_ipv6
    start_postgres start_mariadb start_redis start_sentinel
    start_stalled_peer start_fake_peer
    free_port closed_port make_sqlite scratch_dir resp_command
    find_binary server_user
);
our %EXPORT_TAGS = (all => \@EXPORT_OK);

our $READY_TIMEOUT = $ENV{HETEST_READY_TIMEOUT} || 20;
our $STOP_TIMEOUT  = 20;

my $OWNER_PID = $$;
my @SERVERS;            # everything started, stopped in END (newest first)
my @TEMPDIRS;           # removed in END
my ($WATCHDOG_PID, $WATCHDOG_FH);

# Turn the usual termination signals into an exit so that END runs.  Only
# when the test has not installed handlers of its own.
my %SIGNUM = (HUP => 1, INT => 2, TERM => 15);
for my $sig (sort keys %SIGNUM) {
    next if defined $SIG{$sig} && $SIG{$sig} ne '' && $SIG{$sig} ne 'DEFAULT';
    $SIG{$sig} = sub {
        Test::More::diag("caught SIG$sig: stopping the test servers");
        exit 128 + $SIGNUM{$sig};
    };
}

END {
    if ($$ == $OWNER_PID) {
        local ($?, $!, $@);
        for my $s (reverse @SERVERS) {
            eval { $s->stop; 1 } or warn "stopping $s->{name}: $@";
        }
        if ($WATCHDOG_FH) {
            print {$WATCHDOG_FH} "CLEAN\n";   # we remove them ourselves
            close $WATCHDOG_FH;
            waitpid $WATCHDOG_PID, 0 if $WATCHDOG_PID;
        }
        if ($ENV{HETEST_KEEP}) {
            Test::More::diag("HETEST_KEEP: kept $_") for @TEMPDIRS;
        }
        else {
            rmtree($_, 0, 1) for @TEMPDIRS;
        }
    }
}

# ---------------------------------------------------------------------------
# availability

sub find_binary {
    my ($name) = @_;
    return (-f $name && -x _) ? $name : undef if $name =~ m{/};
    my @dirs = (File::Spec->path, qw(/usr/local/sbin /usr/sbin /sbin));
    for my $d (@dirs) {
        my $p = "$d/$name";
        return $p if -f $p && -x _;
    }
    return undef;
}

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
    push @cand, $ENV{HETEST_PG_BINDIR} if $ENV{HETEST_PG_BINDIR};
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

sub have_mariadb { scalar(my @b = _mariadb_binaries()) ? 1 : 0 }
sub have_redis   { find_binary('redis-server') ? 1 : 0 }

sub have_ipv6 {
    require IO::Socket::IP;
    my $s = IO::Socket::IP->new(LocalHost => '::1', LocalPort => 0,
                                Listen => 1, Proto => 'tcp');
    return $s ? 1 : 0;
}

# ---------------------------------------------------------------------------
# users, directories, ports

sub server_user {
    if ($> == 0) {
        my @pw = getpwnam('nobody')
            or croak "running as root but there is no user 'nobody'";
        return (name => 'nobody', uid => $pw[2], gid => $pw[3]);
    }
    my $name = getpwuid($>) // $>;
    return (name => $name, uid => $>, gid => (split ' ', $))[0]);
}

# A temp dir owned by the server user, checked to be usable by that user.
sub _server_dir {
    my ($tag) = @_;
    my $base = $ENV{HETEST_TMPDIR} // File::Spec->tmpdir;
    my $dir = tempdir("he-$tag-XXXXXX", DIR => $base, CLEANUP => 0);
    _add_tempdir($dir);
    my %u = server_user();
    if ($> == 0) {
        chown $u{uid}, $u{gid}, $dir or croak "chown $dir: $!";
    }
    chmod 0700, $dir;
    # unix socket paths are limited to 107 bytes
    croak "temp dir $dir is too long for unix sockets; set HETEST_TMPDIR"
        if length($dir) > 70;
    my $pid = fork // croak "fork: $!";
    if ($pid == 0) {
        eval { _drop_privileges(\%u) };
        POSIX::_exit(!$@ && -w $dir && -x $dir ? 0 : 1);
    }
    waitpid $pid, 0;
    croak "user $u{name} cannot write $dir (is $base traversable by it? "
        . "set HETEST_TMPDIR)" if $?;
    return $dir;
}

sub scratch_dir {
    my ($tag) = @_;
    my $dir = tempdir("he-" . ($tag // 'scratch') . "-XXXXXX",
                      TMPDIR => 1, CLEANUP => 0);
    _add_tempdir($dir);
    return $dir;
}

# Create a file in a server dir, owned by the server user.
sub _write_file {
    my ($path, $content, $mode) = @_;
    open my $fh, '>', $path or croak "write $path: $!";
    print $fh $content;
    close $fh or croak "write $path: $!";
    chmod $mode // 0600, $path;
    my %u = server_user();
    chown $u{uid}, $u{gid}, $path if $> == 0;
    return $path;
}

sub _mkdir_owned {
    my ($path) = @_;
    mkdir $path, 0700 or croak "mkdir $path: $!";
    my %u = server_user();
    chown $u{uid}, $u{gid}, $path if $> == 0;
    return $path;
}

sub free_port {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                  Proto => 'tcp', Listen => 1)
        or croak "cannot bind 127.0.0.1:0: $!";
    my $port = $s->sockport;
    close $s;
    return $port;
}

sub closed_port { free_port() }

# ---------------------------------------------------------------------------
# processes

sub _drop_privileges {
    my ($u) = @_;
    return unless $> == 0 && $u->{uid} != 0;
    $) = "$u->{gid} $u->{gid}";                 # egid and setgroups()
    POSIX::setgid($u->{gid}) or die "setgid $u->{gid}: $!\n";
    POSIX::setuid($u->{uid}) or die "setuid $u->{uid}: $!\n";
    die "could not drop root privileges\n" if $< == 0 || $> == 0;
    @ENV{qw(USER LOGNAME)} = ($u->{name}) x 2;
}

# The watchdog outlives us by a moment: it reads process-group ids from a
# pipe ("+pid" when started, "-pid" when stopped) and, when the pipe closes
# (we exited, however that happened), kills the groups still listed.
sub _watchdog {
    return $WATCHDOG_FH if $WATCHDOG_FH;
    pipe(my $r, my $w) or croak "pipe: $!";
    my $pid = fork // croak "fork: $!";
    if ($pid == 0) {
        close $w;
        $SIG{$_} = 'IGNORE' for qw(INT HUP);
        $SIG{TERM} = 'DEFAULT';
        POSIX::setsid();
        my (%live, @dirs);              # pid => polite stop signal
        while (my $line = <$r>) {
            chomp $line;
            if    ($line =~ /^\+(\d+) (\w+)$/) { $live{$1} = $2 }
            elsif ($line =~ /^-(\d+)$/)        { delete $live{$1} }
            elsif ($line =~ /^D (.+)$/)        { push @dirs, $1 }
            elsif ($line eq 'CLEAN')           { @dirs = () }
        }
        if (%live) {
            kill 'CONT', map { -$_ } keys %live;
            kill $live{$_}, -$_ for keys %live;
            my $until = time + 5;
            while (time < $until && grep { kill 0, $_ } keys %live) {
                sleep 0.1;
            }
            kill 'KILL', map { -$_ } keys %live;
        }
        rmtree($_, 0, 1) for $ENV{HETEST_KEEP} ? () : @dirs;
        POSIX::_exit(0);
    }
    close $r;
    $w->autoflush(1);
    ($WATCHDOG_PID, $WATCHDOG_FH) = ($pid, $w);
    return $w;
}

sub _add_tempdir {
    my ($dir) = @_;
    push @TEMPDIRS, $dir;
    my $w = _watchdog();
    print {$w} "D $dir\n";
}

sub _watch   { my $w = _watchdog(); print {$w} "+$_[0] ", $_[1] // 'TERM', "\n" }
sub _unwatch { print {$WATCHDOG_FH} "-$_[0]\n" if $WATCHDOG_FH }

# Fork and exec a command, in a new session, stdout/stderr appended to a log,
# as the server user unless as_user => 0.  Returns the pid.
sub _spawn {
    my (%a) = @_;
    my %u = server_user();
    my $wd = _watchdog();
    pipe(my $er, my $ew) or croak "pipe: $!";
    my $pid = fork // croak "fork: $!";
    if ($pid == 0) {
        close $er;
        close $wd;
        eval {
            $SIG{$_} = 'DEFAULT' for qw(INT TERM HUP PIPE CHLD);
            POSIX::setsid();
            open STDIN, '<', '/dev/null' or die "stdin: $!\n";
            open STDOUT, '>>', $a{log} or die "open $a{log}: $!\n";
            open STDERR, '>&', \*STDOUT or die "stderr: $!\n";
            _drop_privileges(\%u) if $a{as_user} // 1;
            if ($a{dir}) { chdir $a{dir} or die "chdir $a{dir}: $!\n" }
            $ENV{HOME} = $a{dir} if $a{dir} && ($a{as_user} // 1);
            for my $k (keys %{ $a{env} || {} }) {
                if (defined $a{env}{$k}) { $ENV{$k} = $a{env}{$k} }
                else                     { delete $ENV{$k} }
            }
            exec { $a{cmd}[0] } @{ $a{cmd} } or die "exec $a{cmd}[0]: $!\n";
        };
        print {$ew} $@ || "unknown failure\n";
        close $ew;
        POSIX::_exit(127);
    }
    close $ew;
    my $err = do { local $/; <$er> };
    close $er;
    if (defined $err && length $err) {
        waitpid $pid, 0;
        croak "cannot start $a{cmd}[0]: $err";
    }
    _watch($pid, $a{stop_signal});
    return $pid;
}

sub _tail {
    my ($file, $n) = @_;
    $n ||= 30;
    open my $fh, '<', $file or return "($file: $!)\n";
    my @l = <$fh>;
    splice @l, 0, @l - $n if @l > $n;
    return join '', "--- last lines of $file ---\n", @l;
}

# Run a command to completion (bounded); die with its log tail on failure.
sub _run {
    my (%a) = @_;
    my $timeout = delete $a{timeout} // 120;
    my $pid = _spawn(%a);
    my $deadline = Time::HiRes::time() + $timeout;
    while (1) {
        my $r = waitpid $pid, WNOHANG;
        if ($r == $pid) {
            my $st = $?;
            _unwatch($pid);
            return 1 if $st == 0;
            croak "@{$a{cmd}}: exit status " . ($st >> 8)
                . " signal " . ($st & 127) . "\n" . _tail($a{log});
        }
        if (Time::HiRes::time() > $deadline) {
            kill 'KILL', -$pid;
            waitpid $pid, 0;
            _unwatch($pid);
            croak "@{$a{cmd}}: no exit after $timeout s\n" . _tail($a{log});
        }
        sleep 0.05;
    }
}

# ---------------------------------------------------------------------------
# the common server object

package HETest::Servers::Process;

use Carp qw(croak);
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep);

sub _new {
    my ($class, %f) = @_;
    my $self = bless { stop_signal => 'TERM', %f }, $class;
    push @SERVERS, $self;
    return $self;
}

for my $f (qw(name dir pid host port log sock user password)) {
    no strict 'refs';
    *{$f} = sub { $_[0]{$f} } unless defined &{$f};
}

sub addr {
    my ($self) = @_;
    my $h = $self->{host};
    $h = "[$h]" if $h =~ /:/;
    return "$h:$self->{port}";
}

sub running {
    my ($self) = @_;
    return 0 unless $self->{pid};
    my $r = waitpid $self->{pid}, WNOHANG;
    return 1 if $r == 0;
    $self->{exit_status} = $?;
    HETest::Servers::_unwatch($self->{pid});
    $self->{pid} = undef;
    return 0;
}

sub log_tail {
    my ($self, $n) = @_;
    return join '', map { HETest::Servers::_tail($_, $n) }
                    grep { -e } $self->{log}, @{ $self->{extra_logs} || [] };
}

sub start {
    my ($self) = @_;
    return $self if $self->running;
    $self->{pid} = HETest::Servers::_spawn(
        cmd => $self->{cmd}, log => $self->{log}, dir => $self->{dir},
        env => $self->{env}, stop_signal => $self->{stop_signal},
    );
    $self->_wait_ready;
    return $self;
}

sub _wait_ready {
    my ($self) = @_;
    my $deadline = Time::HiRes::time() + $HETest::Servers::READY_TIMEOUT;
    my $last_err = '';
    while (1) {
        unless ($self->running) {
            my $st = $self->{exit_status} // 0;
            croak "$self->{name} exited during start-up (status "
                . ($st >> 8) . ", signal " . ($st & 127) . ")\n"
                . $self->log_tail;
        }
        my $ok = eval { $self->_ready };
        return 1 if $ok;
        $last_err = $@ if $@;
        if (Time::HiRes::time() > $deadline) {
            my $msg = "$self->{name} not ready after "
                . "$HETest::Servers::READY_TIMEOUT s"
                . ($last_err ? " (last check: $last_err)" : '') . "\n"
                . $self->log_tail;
            $self->stop;
            croak $msg;
        }
        sleep 0.1;
    }
}

sub stop {
    my ($self) = @_;
    my $pid = $self->{pid} or return $self;
    kill 'CONT', $pid;
    kill $self->{stop_signal}, $pid;
    my $deadline = Time::HiRes::time() + $HETest::Servers::STOP_TIMEOUT;
    while (waitpid($pid, WNOHANG) == 0) {
        if (Time::HiRes::time() > $deadline) {
            warn "$self->{name} (pid $pid) ignored SIG$self->{stop_signal}; "
                . "killing it\n";
            kill 'KILL', -$pid;
            waitpid $pid, 0;
            last;
        }
        sleep 0.05;
    }
    kill 'KILL', -$pid;          # leftovers of its process group, if any
    HETest::Servers::_unwatch($pid);
    $self->{pid} = undef;
    return $self;
}

sub sigstop { my ($s) = @_; kill 'STOP', $s->{pid} or croak "SIGSTOP: $!"; $s }
sub sigcont { my ($s) = @_; kill 'CONT', $s->{pid} or croak "SIGCONT: $!"; $s }

# ---------------------------------------------------------------------------
# PostgreSQL

package HETest::Servers::Postgres;
our @ISA = ('HETest::Servers::Process');

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
    HETest::Servers::_run(
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
    my $dir = _server_dir('pg');
    my $self = HETest::Servers::Postgres->_new(
        name => 'postgres', dir => $dir, host => '127.0.0.1',
        log => "$dir/postgres.log", stop_signal => 'INT',   # fast shutdown
        socket_dir => "$dir/sock", bindir => $bindir,
        psql => _pg_tool($bindir, 'psql'),
        pg_isready => _pg_tool($bindir, 'pg_isready'),
        extra_logs => ["$dir/initdb.log", "$dir/psql.log"],
        %o,
    );
    _mkdir_owned("$dir/sock");
    _write_file("$dir/pwfile", "$o{superpassword}\n");
    _run(cmd => [ "$bindir/initdb", '-D', "$dir/data", '-U', $o{superuser},
                  '--auth=scram-sha-256', "--pwfile=$dir/pwfile",
                  '--no-locale', '-E', 'UTF8', '--no-sync' ],
         log => "$dir/initdb.log", dir => $dir);
    $self->{port} = free_port();
    $self->{cmd} = [
        "$bindir/postgres", '-D', "$dir/data", '-p', $self->{port},
        '-k', "$dir/sock", '-h', '127.0.0.1',
        map { ('-c', $_) }
            'fsync=off', 'full_page_writes=off', 'synchronous_commit=off',
            'max_connections=40', 'shared_buffers=16MB',
            'logging_collector=off', 'log_connections=on',
            'unix_socket_permissions=0777', 'password_encryption=scram-sha-256',
    ];
    $self->start;
    $self->psql(
        qq{CREATE ROLE "$o{user}" LOGIN PASSWORD '$o{password}'},
        qq{CREATE DATABASE "$o{dbname}" OWNER "$o{user}"},
    );
    return $self;
}

# ---------------------------------------------------------------------------
# MariaDB

package HETest::Servers::MariaDB;
our @ISA = ('HETest::Servers::Process');

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
    HETest::Servers::_run(cmd => $self->_client_cmd(@sql),
                          log => "$self->{dir}/client.log", as_user => 0,
                          timeout => 60);
}

package HETest::Servers;

sub start_mariadb {
    my (%o) = (user => 'heuser', password => 'he-my-secret', dbname => 'hedb',
               @_);
    my %bin = _mariadb_binaries() or croak "MariaDB binaries not found";
    my %u = server_user();
    my $dir = _server_dir('my');
    my $self = HETest::Servers::MariaDB->_new(
        name => 'mariadbd', dir => $dir, host => '127.0.0.1',
        log => "$dir/mariadbd.log", socket => "$dir/mysqld.sock",
        client => $bin{client},
        extra_logs => ["$dir/install.log", "$dir/client.log"],
        %o,
    );
    _mkdir_owned("$dir/tmp");
    _run(cmd => [ $bin{install}, '--no-defaults',
                  '--auth-root-authentication-method=normal',
                  "--datadir=$dir/data", '--skip-test-db', "--user=$u{name}" ],
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
our @ISA = ('HETest::Servers::Process');

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

sub start_redis {
    my (%o) = @_;
    my $bin = find_binary('redis-server') or croak "redis-server not found";
    my $dir = _server_dir('redis');
    my $self = HETest::Servers::Redis->_new(
        name => 'redis-server', dir => $dir, host => '127.0.0.1',
        log => "$dir/redis.log", sock => "$dir/redis.sock",
        (defined $o{requirepass} ? (password => $o{requirepass}) : ()),
        (defined $o{username} ? (username => $o{username},
                                 password => $o{password}) : ()),
    );
    croak "start_redis: username needs a password"
        if defined $o{username} && !defined $o{password};
    $self->{port} = free_port();
    my $conf = join "\n",
        "port $self->{port}",
        'bind 127.0.0.1' . (have_ipv6() ? ' -::1' : ''),
        'protected-mode no',
        "unixsocket $dir/redis.sock",
        'unixsocketperm 700',
        "dir $dir",
        'save ""',
        'appendonly no',
        'daemonize no',
        'logfile ""',
        'databases 16',
        (defined $o{requirepass} ? "requirepass $o{requirepass}" : ()),
        (defined $o{username}
            ? ('user default off',
               "user $o{username} on >$o{password} ~* &* +\@all")
            : ()),
        '';
    _write_file("$dir/redis.conf", $conf);
    $self->{cmd} = [ $bin, "$dir/redis.conf" ];
    $self->start;
    return $self;
}

sub start_sentinel {
    my ($master, %o) = @_;
    my $service = $o{service} // 'mymaster';
    my $bin = find_binary('redis-server') or croak "redis-server not found";
    my $dir = _server_dir('sentinel');
    my $self = HETest::Servers::Redis->_new(
        name => 'redis-sentinel', dir => $dir, host => '127.0.0.1',
        log => "$dir/sentinel.log", service => $service,
        sentinel_of => $master,
    );
    $self->{port} = free_port();
    my $conf = join "\n",
        "port $self->{port}",
        'bind 127.0.0.1',
        'protected-mode no',
        "dir $dir",
        'logfile ""',
        'daemonize no',
        "sentinel monitor $service $master->{host} $master->{port} 1",
        "sentinel down-after-milliseconds $service 60000",
        (defined $master->{password}
            ? "sentinel auth-pass $service $master->{password}" : ()),
        (defined $master->{username}
            ? "sentinel auth-user $service $master->{username}" : ()),
        '';
    _write_file("$dir/sentinel.conf", $conf);    # sentinel rewrites it
    $self->{cmd} = [ $bin, "$dir/sentinel.conf", '--sentinel' ];
    $self->start;
    return $self;
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
    my @cmd = @{ $a{cmd} };
    my $req = '*' . @cmd . "\r\n"
            . join('', map { '$' . length($_) . "\r\n$_\r\n" } @cmd);
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
    my $reply = $parse->();
    undef $parse;
    close $sock;
    return $reply;
}

# ---------------------------------------------------------------------------
# fake peers

package HETest::Servers::Peer;
our @ISA = ('HETest::Servers::Process');

sub start { Carp::croak("a fake peer cannot be restarted") unless $_[0]{pid}; $_[0] }

package HETest::Servers;

sub start_fake_peer {
    my (%o) = @_;
    my $listen = IO::Socket::INET->new(
        LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp',
        Listen => 64, ReuseAddr => 1,
    ) or croak "listen on 127.0.0.1: $!";
    my $port = $listen->sockport;
    my $wd = _watchdog();
    my $parent = $$;
    my $pid = fork // croak "fork: $!";
    if ($pid == 0) {
        close $wd;
        $SIG{$_} = 'DEFAULT' for qw(INT TERM HUP CHLD);
        $SIG{PIPE} = 'IGNORE';
        POSIX::setsid();
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
        POSIX::_exit(0);
    }
    close $listen;
    _watch($pid, 'KILL');
    return HETest::Servers::Peer->_new(
        name => defined $o{reply} ? 'fake peer' : 'stalled peer',
        host => '127.0.0.1', port => $port, pid => $pid,
        stop_signal => 'KILL',
    );
}

sub start_stalled_peer { start_fake_peer(@_, reply => undef) }

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
