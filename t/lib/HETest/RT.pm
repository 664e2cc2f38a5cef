package HETest::RT;

# Throwaway Request Tracker 5 for end-to-end tests of
# RT::Extension::HealthEndpoint.
#
#   my $rt = HETest::RT->new(db => 'Pg', config => { HealthEndpoint_Timeout => 1 });
#   $rt->start;                      # private DB (+ redis), schema, rt-server
#   HTTP::Tiny->new->get($rt->url('/healthz/ping'));
#   $rt->stop_db; $rt->start_db; $rt->restart_rt(config => {...});
#
# Everything lives in one temp dir (site config, config dir, RT's var/log/
# mason/session dirs, the PostgreSQL cluster, redis' dir) which is removed
# when the object goes away or at END.  Nothing in /etc is read or changed:
# RT is pointed at the temp dir by RT_SITE_CONFIG / RT_SITE_CONFIG_DIR.
# When run as root every server runs as an unprivileged user (nobody).

use strict;
use warnings;

use Carp qw(croak);
use Cwd qw(abs_path);
use Data::Dumper ();
use Errno ();
use Fcntl qw(SEEK_SET);
use File::Path qw(make_path remove_tree);
use File::Spec;
use File::Temp ();
use FindBin ();
use HTTP::Tiny;
use IO::Socket::INET;
use POSIX ();
use Time::HiRes qw(sleep time);

our $RT_HOME     = $ENV{HETEST_RT_HOME} || '/usr/share/request-tracker5';
our $RT_SERVER   = $ENV{HETEST_RT_SERVER} || first_existing(
    "$RT_HOME/libexec/rt-server", "$RT_HOME/sbin/rt-server", '/usr/bin/rt-server');
our $RT_SETUP_DB = $ENV{HETEST_RT_SETUP_DB} || first_existing(
    "$RT_HOME/sbin/rt-setup-database", '/usr/sbin/rt-setup-database-5',
    '/usr/sbin/rt-setup-database');
our $PG_BIN      = $ENV{HETEST_PG_BIN} || (sort { $b cmp $a } glob '/usr/lib/postgresql/*/bin')[0] || '';
our $REDIS_SERVER = $ENV{HETEST_REDIS_SERVER} || first_existing('/usr/bin/redis-server', '/usr/local/bin/redis-server');
our $RUN_AS      = $ENV{HETEST_RUN_AS} || 'nobody';
our $START_TIMEOUT = $ENV{HETEST_START_TIMEOUT} || 120;

my %LIVE;    # refaddr => object, for END cleanup

sub first_existing { for (@_) { return $_ if defined $_ && -e $_ } return undef }

# ---------------------------------------------------------------- prereqs

# Returns a list of reasons why a throwaway RT with these features
# cannot be run here (empty list: all good).
sub missing {
    my ($class, %want) = @_;
    my @why;
    push @why, "request-tracker5 not installed ($RT_HOME/lib/RT.pm missing)"
        unless -f "$RT_HOME/lib/RT.pm";
    push @why, 'rt-server not found' unless $RT_SERVER && -f $RT_SERVER;
    push @why, 'rt-setup-database not found' unless $RT_SETUP_DB && -f $RT_SETUP_DB;
    push @why, 'Starman not installed' unless eval { require Starman; 1 };
    my $db = $want{db} || 'SQLite';
    if ($db eq 'Pg') {
        push @why, 'PostgreSQL server binaries not found'
            unless $PG_BIN && -x "$PG_BIN/initdb" && -x "$PG_BIN/postgres";
        push @why, 'DBD::Pg not installed' unless eval { require DBD::Pg; 1 };
    } else {
        push @why, 'DBD::SQLite not installed' unless eval { require DBD::SQLite; 1 };
    }
    if ($want{redis}) {
        push @why, 'redis-server not found' unless $REDIS_SERVER;
        push @why, 'Apache::Session::Browseable::Redis not installed'
            unless eval { require Apache::Session::Browseable::Redis; 1 };
    }
    if ($want{blib} // 1) {
        my @inc = default_inc();
        push @why, "the module is not built (no RT/Extension/HealthEndpoint.pm in @inc): run perl Makefile.PL && make"
            unless grep { -f "$_/RT/Extension/HealthEndpoint.pm" } @inc;
    }
    if ($> == 0 && !defined getpwnam($RUN_AS)) {
        push @why, "running as root but user '$RUN_AS' does not exist";
    }
    return @why;
}

# To be called before planning: skip_all when the environment lacks RT
# (or a server needed), but under CI=true that is a failure.
sub require_or_skip {
    my ($class, %want) = @_;
    my @why = $class->missing(%want) or return 1;
    my $why = join '; ', @why;
    require Test::More;
    if (($ENV{CI} || '') eq 'true') {
        Test::More::plan(tests => 1);
        Test::More::fail("CI=true, so a real RT is required: $why");
        exit 1;
    }
    Test::More::plan(skip_all => $why);
}

# Where the built module lives: $ENV{HETEST_BLIB} (a blib dir or a list of
# lib dirs separated by ':'), else ../blib relative to the test.
sub default_inc {
    if (my $e = $ENV{HETEST_INC}) { return split /:/, $e }
    my $blib = $ENV{HETEST_BLIB} || "$FindBin::Bin/../blib";
    $blib = abs_path($blib) // $blib;
    return ("$blib/lib", "$blib/arch");
}

# ---------------------------------------------------------------- object

sub new {
    my ($class, %opt) = @_;
    my $self = bless {
        db        => 'SQLite',    # or 'Pg'
        plugin    => 1,           # Plugin('RT::Extension::HealthEndpoint')
        workers   => 2,
        webpath   => '',          # e.g. '/rt' (passed to rt-server --webpath and $WebPath)
        config    => {},          # name => value (see config_text)
        extra_config => '',       # raw perl appended to the site config
        redis     => 0,           # start a private redis-server
        redis_sessions => undef,  # default: same as redis
        redis_password => undef,  # redis-server --requirepass, and in %WebSessionProperties
        redis_database => undef,  # database => N in %WebSessionProperties
        session_properties => undef,  # hashref: %WebSessionProperties as given
        port      => undef,
        host      => '127.0.0.1',
        sqlite_name => undef,     # default: absolute path in var/
        quiet     => 0,
        %opt,
    }, $class;
    $self->{inc} ||= [ default_inc() ];
    $self->{redis_sessions} = $self->{redis} unless defined $self->{redis_sessions};
    $self->{owner_pid} = $$;

    my $dir = File::Temp::tempdir('hetest-rt-XXXXXX', TMPDIR => 1, CLEANUP => 0);
    chmod 0755, $dir;
    $self->{dir} = $dir;
    $LIVE{"$self"} = $self;

    for my $d (qw(etc etc/RT_SiteConfig.d var var/log var/mason_data var/session_data run lib)) {
        make_path("$dir/$d");
    }

    if ($> == 0) {
        my ($uid, $gid) = (getpwnam $RUN_AS)[2, 3];
        defined $uid or croak "no user $RUN_AS";
        @$self{qw(uid gid)} = ($uid, $gid);
        # The unprivileged servers must be able to read the built module:
        # copy the lib dirs into the temp dir.
        my @inc;
        my $i = 0;
        for my $src (@{ $self->{inc} }) {
            next unless -d $src;
            my $dst = "$dir/lib/inc" . $i++;
            system('cp', '-a', $src, $dst) == 0 or croak "cp -a $src $dst failed";
            push @inc, $dst;
        }
        $self->{inc} = \@inc;
        system('chown', '-R', "$uid:$gid", $dir) == 0 or croak "chown $dir failed";
        system('chmod', '-R', 'a+rX', "$dir/lib");
    }

    $self->{port} ||= free_port();
    return $self;
}

sub dir      { $_[0]{dir} }
sub port     { $_[0]{port} }
sub db       { $_[0]{db} }
sub pg_port  { $_[0]{pg_port} }
sub redis_port { $_[0]{redis_port} }
sub webpath  { $_[0]{webpath} }
sub base_url { my $s = shift; "http://$s->{host}:$s->{port}" . ($s->{webpath} || '') }
sub url      { my ($s, $p) = @_; $p = '' unless defined $p; $s->base_url . $p }
sub log_file { "$_[0]{dir}/var/log/rt.log" }
sub server_output_file { "$_[0]{dir}/run/rt-server.out" }
sub sqlite_file {
    my $s = shift;
    my $n = $s->{sqlite_name} // "$s->{dir}/var/rt5.sqlite";
    return File::Spec->file_name_is_absolute($n) ? $n : "$s->{dir}/var/$n";
}

sub note { my $s = shift; return if $s->{quiet}; print STDERR "# [rt] @_\n" if $ENV{HETEST_VERBOSE} }

sub free_port {
    my $sock = IO::Socket::INET->new(
        Listen => 1, LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp', ReuseAddr => 1,
    ) or croak "cannot find a free port: $!";
    my $port = $sock->sockport;
    close $sock;
    return $port;
}

sub port_open {
    my ($port) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp', Timeout => 1);
    return $s ? 1 : 0;
}

# ---------------------------------------------------------------- processes

# Fork a child in its own process group, drop privileges when root,
# redirect output, exec. Returns the pid.
sub spawn {
    my ($self, %a) = @_;
    my @cmd = @{ $a{cmd} };
    my $out = $a{output} || '/dev/null';
    my $pid = fork;
    croak "fork: $!" unless defined $pid;
    if ($pid == 0) {
        eval {
            POSIX::setsid();
            open STDIN, '<', '/dev/null';
            open STDOUT, '>>', $out or die "open $out: $!";
            open STDERR, '>&', \*STDOUT;
            $self->_drop_privileges;
            %ENV = (%ENV, %{ $a{env} || {} });
            chdir($a{chdir} || $self->{dir});
            exec { $cmd[0] } @cmd or die "exec $cmd[0]: $!";
        };
        print STDERR "spawn failed: $@";
        POSIX::_exit(127);
    }
    return $pid;
}

sub _drop_privileges {
    my $self = shift;
    return unless $> == 0 && defined $self->{uid};
    my ($uid, $gid) = @$self{qw(uid gid)};
    POSIX::setgid($gid) or die "setgid: $!";
    $) = "$gid $gid";
    POSIX::setuid($uid) or die "setuid: $!";
    die "still root" if $> == 0 || $< == 0;
    $ENV{HOME} = $self->{dir};
    $ENV{USER} = $ENV{LOGNAME} = $RUN_AS;
}

# Run a command to completion (as the unprivileged user when root).
# Returns (exit status, output).
sub run_cmd {
    my ($self, %a) = @_;
    my $out = "$self->{dir}/run/cmd.$$." . int(rand 1e9);
    my $pid = $self->spawn(%a, output => $out);
    my $timeout = $a{timeout} || 300;
    my $deadline = time + $timeout;
    my $st;
    while (1) {
        my $r = waitpid($pid, POSIX::WNOHANG());
        if ($r == $pid) { $st = $?; last }
        if (time > $deadline) { kill 'KILL', -$pid; waitpid($pid, 0); $st = -1; last }
        sleep 0.1;
    }
    my $text = slurp($out);
    unlink $out;
    return ($st, $text);
}

sub stop_pid {
    my ($self, $pid, %a) = @_;
    return unless $pid;
    my $sig = $a{signal} || 'TERM';
    my $wait = $a{wait} || 20;
    if (exists $a{group} && !$a{group}) { kill $sig, $pid }
    else { kill $sig, -$pid or kill $sig, $pid }
    my $deadline = time + $wait;
    while (time < $deadline) {
        my $r = waitpid($pid, POSIX::WNOHANG());
        last if $r == $pid || $r == -1;
        sleep 0.05;
    }
    if (kill 0, $pid) {
        kill 'KILL', -$pid;
        kill 'KILL', $pid;
        waitpid($pid, 0);
    }
    # stragglers of the group (e.g. Starman workers)
    kill 'KILL', -$pid;
}

sub wait_port {
    my ($self, $port, $pid, $what, $timeout) = @_;
    my $deadline = time + ($timeout || 60);
    while (time < $deadline) {
        return 1 if port_open($port);
        if ($pid && waitpid($pid, POSIX::WNOHANG()) == $pid) {
            return 0;
        }
        sleep 0.1;
    }
    return 0;
}

# ---------------------------------------------------------------- PostgreSQL

sub pg_dsn_admin {
    my $s = shift;
    return ("dbi:Pg:dbname=postgres;host=127.0.0.1;port=$s->{pg_port}", 'postgres', $s->{pg_admin_password});
}

sub init_pg {
    my $self = shift;
    return if $self->{pg_initialised}++;
    my $dir = "$self->{dir}/pg";
    make_path($dir, "$self->{dir}/pg-sock");
    $self->{pg_admin_password} = 'hetest-dba-' . int(rand 1e6);
    my $pw = "$self->{dir}/run/pgpass";
    write_file($pw, "$self->{pg_admin_password}\n");
    if (defined $self->{uid}) {
        chown $self->{uid}, $self->{gid}, $dir, "$self->{dir}/pg-sock", $pw;
    }
    my ($st, $out) = $self->run_cmd(cmd => [
        "$PG_BIN/initdb", '-D', "$dir/data", '-U', 'postgres', "--pwfile=$pw",
        '--auth-host=scram-sha-256', '--auth-local=trust', '-E', 'UTF8',
        '--locale=C', '--no-sync',
    ], timeout => 120);
    unlink $pw;
    croak "initdb failed:\n$out" if $st;
    $self->{pg_port} ||= free_port();
}

sub start_pg {
    my $self = shift;
    $self->init_pg;
    croak 'PostgreSQL already running' if $self->{pg_pid};
    $self->{pg_pid} = $self->spawn(
        cmd => [
            "$PG_BIN/postgres", '-D', "$self->{dir}/pg/data",
            '-c', "port=$self->{pg_port}",
            '-c', 'listen_addresses=127.0.0.1',
            '-c', "unix_socket_directories=$self->{dir}/pg-sock",
            '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off',
            '-c', 'max_connections=50', '-c', 'shared_buffers=32MB',
        ],
        output => "$self->{dir}/run/postgres.log",
    );
    # port open is not quite "accepting connections"; poll with DBI.
    my $deadline = time + 60;
    require DBI;
    while (time < $deadline) {
        croak "postgres exited:\n" . tail(slurp("$self->{dir}/run/postgres.log"), 30)
            if waitpid($self->{pg_pid}, POSIX::WNOHANG()) == $self->{pg_pid};
        my $dbh = eval {
            DBI->connect($self->pg_dsn_admin, { RaiseError => 0, PrintError => 0 })
        };
        if ($dbh) { $dbh->disconnect; return 1 }
        sleep 0.2;
    }
    croak "postgres did not come up:\n" . tail(slurp("$self->{dir}/run/postgres.log"), 30);
}

sub stop_pg {
    my $self = shift;
    $self->thaw_pg if $self->{pg_frozen};
    my $pid = delete $self->{pg_pid} or return;
    # SIGINT = fast shutdown: terminates client connections.
    $self->stop_pid($pid, signal => 'INT', wait => 30, group => 0);
    # make sure the port really is closed
    my $deadline = time + 10;
    sleep 0.1 while port_open($self->{pg_port}) && time < $deadline;
}

sub pg_running { $_[0]{pg_pid} ? 1 : 0 }

# ---------------------------------------------------------------- redis

sub start_redis {
    my $self = shift;
    croak 'redis already running' if $self->{redis_pid};
    $self->{redis_port} ||= free_port();
    my $rdir = "$self->{dir}/redis";
    make_path($rdir);
    chown $self->{uid}, $self->{gid}, $rdir if defined $self->{uid};
    $self->{redis_pid} = $self->spawn(
        cmd => [
            $REDIS_SERVER, '--port', $self->{redis_port}, '--bind', '127.0.0.1',
            '--dir', $rdir, '--save', '', '--appendonly', 'no', '--daemonize', 'no',
            '--protected-mode', 'yes', '--logfile', '',
            (defined $self->{redis_password} ? ('--requirepass', $self->{redis_password}) : ()),
        ],
        output => "$self->{dir}/run/redis.log",
    );
    $self->wait_port($self->{redis_port}, $self->{redis_pid}, 'redis', 20)
        or croak "redis-server did not start:\n" . tail(slurp("$self->{dir}/run/redis.log"), 20);
    return 1;
}

sub stop_redis {
    my $self = shift;
    $self->thaw_redis if $self->{redis_frozen};
    my $pid = delete $self->{redis_pid} or return;
    $self->stop_pid($pid, signal => 'TERM', wait => 10);
    my $deadline = time + 10;
    sleep 0.1 while port_open($self->{redis_port}) && time < $deadline;
}

sub redis_running { $_[0]{redis_pid} ? 1 : 0 }

# Minimal RESP client: one command (after AUTH/SELECT as configured),
# returns the reply (integer/bulk/status; arrays as array refs).
sub redis_cmd {
    my ($self, @cmd) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $self->{redis_port}, Proto => 'tcp', Timeout => 3)
        or croak "connect redis: $!";
    my @pre;
    push @pre, ['AUTH', $self->{redis_password}] if defined $self->{redis_password};
    push @pre, ['SELECT', $self->{redis_database}] if $self->{redis_database};
    _resp_read($s, _resp_send($s, @$_)) for @pre;
    _resp_send($s, @cmd);
    return _resp_read($s);
}

sub _resp_send {
    my ($s, @cmd) = @_;
    print {$s} '*' . @cmd . "\r\n" . join('', map { '$' . length($_) . "\r\n$_\r\n" } @cmd);
    return;
}

sub _resp_read {
    my ($s) = @_;
    my $line = <$s>;
    defined $line or croak 'redis: no reply';
    $line =~ s/\r\n\z//;
    my $t = substr($line, 0, 1, '');
    if ($t eq ':' || $t eq '+') { return $line }
    if ($t eq '-') { croak "redis error: $line" }
    if ($t eq '$') {
        return undef if $line < 0;
        my $buf = '';
        while (length $buf < $line + 2) {
            my $n = read($s, $buf, $line + 2 - length $buf, length $buf);
            croak 'redis: short read' unless $n;
        }
        return substr($buf, 0, $line);
    }
    if ($t eq '*') {
        return undef if $line < 0;
        return [ map { _resp_read($s) } 1 .. $line ];
    }
    croak "redis: unexpected reply type $t";
}

sub redis_dbsize { my $s = shift; return 0 + $s->redis_cmd('DBSIZE') }

# ---------------------------------------------------------------- site config

sub perl_value {
    my $v = shift;
    local $Data::Dumper::Terse = 1;
    local $Data::Dumper::Indent = 0;
    local $Data::Dumper::Sortkeys = 1;
    local $Data::Dumper::Useqq = 1;
    return Data::Dumper::Dumper($v);
}

# Keys: 'Name' => scalar (refs allowed, e.g. arrayref); '%Name' => hashref;
# '@Name' => arrayref.  undef value => Set($Name, undef).
sub config_line {
    my ($name, $value) = @_;
    if ($name =~ s/^%//) {
        my $inner = perl_value($value);
        $inner =~ s/^\{//; $inner =~ s/\}$//;
        return "Set(\%$name, $inner);\n";
    }
    if ($name =~ s/^\@//) {
        my $inner = perl_value($value);
        $inner =~ s/^\[//; $inner =~ s/\]$//;
        return "Set(\@$name, $inner);\n";
    }
    $name =~ s/^\$//;
    return "Set(\$$name, " . perl_value($value) . ");\n";
}

sub config_text {
    my $self = shift;
    my $d = $self->{dir};
    my $var = "$d/var";
    my $t = "# generated by HETest::RT -- throwaway RT\n";
    # RT's own paths (package variables from RT::Generated, not options):
    # point everything writable into the temp dir.
    $t .= "\$RT::VarPath = " . perl_value($var) . ";\n";
    $t .= "\$RT::MasonDataDir = " . perl_value("$var/mason_data") . ";\n";
    $t .= "\$RT::MasonSessionDir = " . perl_value("$var/session_data") . ";\n";
    $t .= "\$RT::LocalPluginPath = " . perl_value($self->{local_plugin_path}) . ";\n"
        if $self->{local_plugin_path};
    my %c = (
        rtname         => 'hetest',
        Organization   => 'hetest.example',
        Timezone       => 'UTC',
        WebDomain      => $self->{host},
        WebPort        => $self->{port},
        WebPath        => $self->{webpath} || '',
        LogToFile      => 'debug',
        LogDir         => "$var/log",
        LogToFileNamed => 'rt.log',
        LogToSTDERR    => 'error',
        LogToSyslog    => undef,
        CorrespondAddress => 'rt@hetest.example',
        CommentAddress => 'rt-comment@hetest.example',
        OwnerEmail     => 'root@hetest.example',
    );
    if ($self->{db} eq 'Pg') {
        %c = (%c,
            DatabaseType     => 'Pg',
            DatabaseHost     => '127.0.0.1',
            DatabasePort     => $self->{pg_port},
            DatabaseName     => 'rt5',
            DatabaseUser     => 'rt_user',
            DatabasePassword => 'rt_pass',
            DatabaseAdmin    => 'postgres',
        );
    } else {
        %c = (%c,
            DatabaseType => 'SQLite',
            DatabaseHost => undef,
            DatabasePort => undef,
            DatabaseName => $self->{sqlite_name} // "$var/rt5.sqlite",
        );
    }
    if ($self->{redis_sessions}) {
        $c{WebSessionClass} = 'Apache::Session::Browseable::Redis';
    }
    if ($self->{session_properties}) {
        $c{'%WebSessionProperties'} = $self->{session_properties};
    } elsif ($self->{redis_sessions}) {
        $c{'%WebSessionProperties'} = {
            server => "127.0.0.1:" . ($self->{redis_port} // 0),
            (defined $self->{redis_password} ? (password => $self->{redis_password}) : ()),
            ($self->{redis_database} ? (database => $self->{redis_database}) : ()),
        };
    }
    %c = (%c, %{ $self->{config} });
    for my $k (sort keys %c) {
        $t .= config_line($k, $c{$k});
    }
    $t .= "Plugin('RT::Extension::HealthEndpoint');\n" if $self->{plugin};
    $t .= $self->{extra_config} if $self->{extra_config};
    $t .= "1;\n";
    return $t;
}

sub write_config {
    my $self = shift;
    my $f = "$self->{dir}/etc/RT_SiteConfig.pm";
    write_file($f, $self->config_text);
    chmod 0644, $f;
    return $f;
}

sub rt_env {
    my $self = shift;
    my @inc = grep { -d } @{ $self->{inc} };
    return {
        RT_SITE_CONFIG     => "$self->{dir}/etc/RT_SiteConfig.pm",
        RT_SITE_CONFIG_DIR => "$self->{dir}/etc/RT_SiteConfig.d",
        PERL5LIB           => join(':', @inc, grep { length } split /:/, ($ENV{HETEST_EXTRA_PERL5LIB} || '')),
        TMPDIR             => "$self->{dir}/run",
        PGCONNECT_TIMEOUT  => 5,
    };
}

# ---------------------------------------------------------------- database

sub start_db { my $s = shift; $s->{db} eq 'Pg' ? $s->start_pg : 1 }
sub stop_db  { my $s = shift; $s->{db} eq 'Pg' ? $s->stop_pg  : 1 }

sub init_db {
    my $self = shift;
    return if $self->{db_initialised};
    $self->write_config;
    my @cmd = ($^X, $RT_SETUP_DB, '--action', 'init');
    if ($self->{db} eq 'Pg') {
        push @cmd, '--dba', 'postgres', '--dba-password', $self->{pg_admin_password};
    } else {
        push @cmd, '--force';    # SQLite: no DBA password to prompt for
    }
    my $t0 = time;
    my ($st, $out) = $self->run_cmd(cmd => \@cmd, env => $self->rt_env, timeout => 400);
    croak "rt-setup-database failed (status $st):\n" . tail($out, 40) if $st;
    $self->{db_init_seconds} = time - $t0;
    $self->{db_initialised} = 1;
}

sub dbh {
    my $self = shift;
    require DBI;
    if ($self->{db} eq 'Pg') {
        return DBI->connect("dbi:Pg:dbname=rt5;host=127.0.0.1;port=$self->{pg_port}",
            'postgres', $self->{pg_admin_password}, { RaiseError => 1, PrintError => 0, AutoCommit => 1 });
    }
    return DBI->connect('dbi:SQLite:dbname=' . $self->sqlite_file, '', '',
        { RaiseError => 1, PrintError => 0, AutoCommit => 1 });
}

# Number of stored web sessions, wherever this RT keeps them.
sub session_count {
    my $self = shift;
    if ($self->{redis_sessions}) {
        return $self->redis_dbsize;
    }
    if ($self->{db} eq 'Pg') {
        my $dbh = $self->dbh;
        my ($n) = $dbh->selectrow_array('SELECT count(*) FROM sessions');
        $dbh->disconnect;
        return $n;
    }
    # SQLite: Apache::Session::File in MasonSessionDir (plus lock files)
    opendir my $dh, "$self->{dir}/var/session_data" or return 0;
    my $n = grep { !/^\./ && !/\.lock$/ && -f "$self->{dir}/var/session_data/$_" } readdir $dh;
    return $n;
}

# ---------------------------------------------------------------- RT itself

sub start {
    my $self = shift;
    $self->start_redis if $self->{redis} && !$self->{redis_pid};
    $self->start_db unless $self->{db} ne 'Pg' || $self->{pg_pid};
    $self->init_db;
    $self->start_rt;
    return $self;
}

sub start_rt {
    my $self = shift;
    croak 'RT already running' if $self->{rt_pid};
    $self->write_config;
    # fresh output file per start, but keep RT's log (tests read it)
    unlink $self->server_output_file;
    $self->{log_mark} = -s $self->log_file || 0;
    my @cmd = (
        $^X, $RT_SERVER,
        '--server', 'Starman',
        '--host', $self->{host},
        '--port', $self->{port},
        '--workers', $self->{workers},
        ($self->{webpath} ? ('--webpath', $self->{webpath}) : ()),
    );
    my $t0 = time;
    $self->{rt_pid} = $self->spawn(cmd => \@cmd, env => $self->rt_env, output => $self->server_output_file);
    $self->wait_ready or do {
        my $diag = $self->diagnostics;
        $self->stop_rt;
        croak "RT did not become ready within ${START_TIMEOUT}s\n$diag";
    };
    $self->{rt_start_seconds} = time - $t0;
    return 1;
}

# Ready = answers HTTP on a static file (which creates no session).
sub wait_ready {
    my $self = shift;
    my $deadline = time + $START_TIMEOUT;
    my $http = HTTP::Tiny->new(timeout => 5, max_redirect => 0);
    my $probe = $self->url('/static/images/bpslogo.png');
    while (time < $deadline) {
        return 0 if waitpid($self->{rt_pid}, POSIX::WNOHANG()) == $self->{rt_pid};
        if (port_open($self->{port})) {
            my $r = $http->get($probe);
            return 1 if $r->{status} != 599;
        }
        sleep 0.25;
    }
    return 0;
}

sub stop_rt {
    my $self = shift;
    my $pid = delete $self->{rt_pid} or return;
    # Starman: TERM to the master stops the workers too (group kill
    # in stop_pid catches leftovers).
    $self->stop_pid($pid, signal => 'TERM', wait => 20);
    my $deadline = time + 10;
    sleep 0.1 while port_open($self->{port}) && time < $deadline;
}

sub rt_running { $_[0]{rt_pid} ? 1 : 0 }

# restart_rt(config => {...}, extra_config => '...', webpath => '/rt', plugin => 0)
# replaces those settings (config is merged into the current config hash
# unless replace_config => 1).
sub restart_rt {
    my ($self, %a) = @_;
    $self->stop_rt;
    if (my $c = delete $a{config}) {
        $self->{config} = delete $a{replace_config} ? {%$c} : { %{ $self->{config} }, %$c };
    }
    delete $a{replace_config};
    $self->{$_} = $a{$_} for keys %a;
    $self->start_rt;
}

sub rt_log {
    my $self = shift;
    return slurp($self->log_file) // '';
}

# Byte offset into the RT log; pass it to rt_log_since to read what was
# logged after it.
sub rt_log_mark { return -s $_[0]->log_file || 0 }

sub rt_log_since {
    my ($self, $mark) = @_;
    open my $fh, '<', $self->log_file or return '';
    seek $fh, $mark || 0, SEEK_SET;
    local $/;
    my $t = <$fh>;
    return $t // '';
}

sub diagnostics {
    my $self = shift;
    my $out = "--- rt-server output (tail) ---\n" . tail(slurp($self->server_output_file), 40);
    $out .= "--- RT log (tail) ---\n" . tail($self->rt_log, 40);
    if ($self->{db} eq 'Pg') {
        $out .= "--- postgres log (tail) ---\n" . tail(slurp("$self->{dir}/run/postgres.log"), 15);
    }
    return $out;
}

# Freeze/thaw the whole PostgreSQL process group (postmaster and every
# backend): connections hang instead of being refused, which exercises
# the check's timeout.
sub freeze_redis { my $s = shift; kill 'STOP', $s->{redis_pid} if $s->{redis_pid}; $s->{redis_frozen} = 1 }
sub thaw_redis   { my $s = shift; kill 'CONT', $s->{redis_pid} if $s->{redis_pid}; $s->{redis_frozen} = 0 }
sub freeze_pg { my $s = shift; kill 'STOP', -$s->{pg_pid} if $s->{pg_pid}; $s->{pg_frozen} = 1 }
sub thaw_pg   { my $s = shift; kill 'CONT', -$s->{pg_pid} if $s->{pg_pid}; $s->{pg_frozen} = 0 }

# ---------------------------------------------------------------- HTTP checks

# Shared assertions for the health endpoints (Test::More must be loaded).
#   $rt->http                       HTTP::Tiny without cookie jar
#   $rt->check_ping($path, $name)   GET+HEAD: 200 text/plain "pong"
#   $rt->check_status($path, \%checks, $code, $name)
#   $rt->check_405($path, $name)
sub http {
    my $s = shift;
    return $s->{http} ||= HTTP::Tiny->new(timeout => 15, max_redirect => 0, keep_alive => 1,
        agent => 'hetest/1');
}

# One request on a fresh connection (Connection: close); returns all the
# bytes the server sent (to see that a HEAD response has no body).
sub raw_request {
    my ($s, $method, $path) = @_;
    my $sock = IO::Socket::INET->new(PeerAddr => $s->{host}, PeerPort => $s->{port}, Proto => 'tcp', Timeout => 10)
        or return "connect failed: $!";
    my $full = ($s->{webpath} || '') . $path;
    print {$sock} "$method $full HTTP/1.1\r\nHost: $s->{host}:$s->{port}\r\nConnection: close\r\n\r\n";
    my $buf = '';
    my $deadline = time + 10;
    while (time < $deadline) {
        my $n = sysread($sock, my $chunk, 65536);
        last unless $n;
        $buf .= $chunk;
    }
    return $buf;
}

sub status_body {
    my ($checks) = @_;
    my $fail = grep { $_ eq 'fail' } values %$checks;
    return '{"checks":{' . join(',', map { qq{"$_":"$checks->{$_}"} } sort keys %$checks)
        . '},"status":"' . ($fail ? 'fail' : 'ok') . '"}';
}

sub _common_headers {
    my ($r, $len, $name) = @_;
    Test::More::is($r->{headers}{'cache-control'}, 'no-store', "$name: Cache-Control: no-store");
    Test::More::is($r->{headers}{'content-length'}, $len, "$name: Content-Length $len");
    Test::More::ok(!exists $r->{headers}{'set-cookie'}, "$name: no Set-Cookie")
        or Test::More::diag("Set-Cookie: " . join(' | ', ref $r->{headers}{'set-cookie'}
            ? @{ $r->{headers}{'set-cookie'} } : $r->{headers}{'set-cookie'}));
}

sub check_ping {
    my ($s, $path, $name) = @_;
    $path ||= '/healthz/ping';
    $name ||= "ping $path";
    my $url = $s->url($path);
    my $r = $s->http->get($url);
    Test::More::subtest("$name (GET)" => sub {
        Test::More::is($r->{status}, 200, 'status 200') or Test::More::diag($r->{content});
        Test::More::is($r->{content}, 'pong', 'body "pong"');
        Test::More::like($r->{headers}{'content-type'} // '', qr{^text/plain\b}, 'text/plain');
        _common_headers($r, 4, 'GET');
    });
    my $h = $s->http->request(HEAD => $url);
    my $raw = $s->raw_request('HEAD', $path);
    Test::More::subtest("$name (HEAD)" => sub {
        Test::More::is($h->{status}, 200, 'status 200');
        Test::More::like($raw, qr{\AHTTP/1\.[01] 200 }, 'raw HEAD: 200');
        Test::More::like($raw, qr{\r\n\r\n\z}, 'raw HEAD: nothing after the headers');
        Test::More::like($h->{headers}{'content-type'} // '', qr{^text/plain\b}, 'text/plain');
        _common_headers($h, 4, 'HEAD');
    });
    return $r;
}

sub check_status {
    my ($s, $path, $checks, $code, $name) = @_;
    $path ||= '/healthz/status';
    my $want = status_body($checks);
    $code ||= ($want =~ /"status":"fail"/ ? 503 : 200);
    $name ||= "status $path";
    my $url = $s->url($path);
    my $r = $s->http->get($url);
    Test::More::subtest("$name (GET) => $code $want" => sub {
        Test::More::is($r->{status}, $code, "status $code");
        Test::More::is($r->{content}, $want, 'exact JSON body');
        Test::More::like($r->{headers}{'content-type'} // '', qr{^application/json\b}, 'application/json');
        _common_headers($r, length($want), 'GET');
    });
    my $h = $s->http->request(HEAD => $url);
    my $raw = $s->raw_request('HEAD', $path);
    Test::More::subtest("$name (HEAD) => $code" => sub {
        Test::More::is($h->{status}, $code, "status $code");
        Test::More::like($raw, qr{\AHTTP/1\.[01] $code }, "raw HEAD: $code");
        Test::More::like($raw, qr{\r\n\r\n\z}, 'raw HEAD: nothing after the headers');
        Test::More::like($h->{headers}{'content-type'} // '', qr{^application/json\b}, 'application/json');
        _common_headers($h, length($want), 'HEAD');
    });
    return $r;
}

sub check_405 {
    my ($s, $path, $name) = @_;
    $name ||= $path;
    my $url = $s->url($path);
    Test::More::subtest("$name: other methods => 405" => sub {
        for my $m (qw(POST PUT DELETE OPTIONS PATCH)) {
            my $r = $s->http->request($m, $url,
                ($m =~ /^(?:POST|PUT|PATCH)$/
                    ? { content => 'x=1', headers => { 'content-type' => 'application/x-www-form-urlencoded' } }
                    : ()));
            Test::More::is($r->{status}, 405, "$m => 405");
            Test::More::is($r->{headers}{allow}, 'GET, HEAD', "$m: Allow: GET, HEAD");
            Test::More::ok(!exists $r->{headers}{'set-cookie'}, "$m: no Set-Cookie");
        }
    });
}

# Wait (bounded) until $code->() is true; returns its last value.
sub wait_until {
    my ($s, $timeout, $code) = @_;
    my $deadline = time + $timeout;
    my $v;
    while (1) {
        $v = $code->();
        return $v if $v || time > $deadline;
        sleep 0.2;
    }
}

# ---------------------------------------------------------------- teardown

sub stop_all {
    my $self = shift;
    return unless ($self->{owner_pid} || 0) == $$;
    $self->stop_rt;
    $self->stop_pg;
    $self->stop_redis;
}

sub cleanup {
    my $self = shift;
    return unless ($self->{owner_pid} || 0) == $$;
    $self->stop_all;
    if ($self->{dir} && -d $self->{dir}) {
        if ($ENV{HETEST_KEEP}) {
            print STDERR "# HETEST_KEEP: leaving $self->{dir}\n";
        } else {
            remove_tree($self->{dir});
        }
    }
    delete $LIVE{"$self"};
    $self->{dir} = undef;
}

sub DESTROY { my $s = shift; local ($?, $!, $@); $s->cleanup if $s->{dir} }

END {
    local ($?, $!, $@);
    $_->cleanup for values %LIVE;
}

# Signals (Ctrl-C during a test run) should still clean up.
for my $sig (qw(INT TERM HUP)) {
    $SIG{$sig} = sub { $_->cleanup for values %LIVE; POSIX::_exit(130) }
        if !defined $SIG{$sig} || $SIG{$sig} eq '' || $SIG{$sig} eq 'DEFAULT';
}

# ---------------------------------------------------------------- helpers

sub slurp {
    my $f = shift;
    open my $fh, '<', $f or return undef;
    local $/;
    my $t = <$fh>;
    return $t;
}

sub write_file {
    my ($f, $t) = @_;
    open my $fh, '>', $f or croak "write $f: $!";
    print {$fh} $t;
    close $fh or croak "close $f: $!";
}

sub tail {
    my ($t, $n) = @_;
    return "(none)\n" unless defined $t && length $t;
    my @l = split /\n/, $t;
    @l = @l[-$n .. -1] if @l > $n;
    return join("\n", @l) . "\n";
}

1;
