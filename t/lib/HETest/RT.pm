package HETest::RT;

# Throwaway Request Tracker for end-to-end tests of
# RT::Extension::HealthEndpoint, for bench/ and for eg/demo.
#
#   my $rt = HETest::RT->new(db => 'Pg', config => { HealthEndpoint_Timeout => 1 });
#   $rt->start;                      # private DB (+ redis), schema, rt-server
#   HTTP::Tiny->new->get($rt->url('/healthz/ping'));
#   $rt->stop_db; $rt->start_db; $rt->restart_rt(config => {...});
#
# RT's files live in one temp dir (site config, config dir, RT's var/log/
# mason/session dirs); PostgreSQL and redis are HETest::Servers servers
# with dirs of their own.  All are removed by cleanup or at exit, and the
# processes stopped, by HETest::Proc (END, signals, watchdog).  Nothing in
# /etc is read or changed: RT is pointed at the temp dir by RT_SITE_CONFIG
# / RT_SITE_CONFIG_DIR.  When run as root every server runs as an
# unprivileged user (nobody, or $ENV{HETEST_RUN_AS}).
#
# Which RT: $ENV{HETEST_RT_HOME}, the directory holding RT's lib/RT.pm:
# Debian's RT 5 (/usr/share/request-tracker5, the default), Debian's RT 4.4
# (/usr/share/request-tracker4) or a source install (/opt/rt6).  RT's own
# lib/RT/Generated.pm says its version and where its programs are:
# rt-server is libexec/rt-server (Debian) or sbin/rt-server (source), and
# rt-setup-database is sbin/rt-setup-database (source) or Debian's
# $SbinPath/rt-setup-database-N of that major version -- never the
# rt-setup-database alternative, which points at whichever RT Debian
# installed last.  HETEST_RT_SERVER / HETEST_RT_SETUP_DB override.
#
# The test RT loads no installed plugin: its $RT::LocalPluginPath and
# $RT::PluginPath are an empty directory of its own (or the one a test
# names with local_plugin_path), and the module comes from blib through
# PERL5LIB.  A tiny test-only plugin, HETest::RTProbe (t/lib), reports
# from inside a worker which files it loaded: $rt->probe, and
# $rt->check_loaded_from(...) asserts it.

use strict;
use warnings;

use Carp qw(croak);
use Cwd qw(abs_path);
use Data::Dumper ();
use Fcntl qw(SEEK_SET);
use File::Path qw(make_path);
use File::Spec;
use FindBin ();
use HTTP::Tiny;
use IO::Socket::INET;
use Time::HiRes qw(sleep time);

use HETest::Proc qw(free_port port_open scratch_dir remove_dir server_user
                    slurp write_file log_tail run_cmd);
use HETest::Servers ();
use HETest::Ps ();

our $RT_HOME     = $ENV{HETEST_RT_HOME} || '/usr/share/request-tracker5';
$RT_HOME =~ s{/+\z}{};
our %RT_PATHS    = rt_generated($RT_HOME);
our $RT_VERSION  = $RT_PATHS{VERSION};          # undef: no RT there
our ($RT_MAJOR)  = ($RT_VERSION // '') =~ /^(\d+)/;
our $RT_SERVER   = $ENV{HETEST_RT_SERVER} || rt_program('rt-server');
our $RT_SETUP_DB = $ENV{HETEST_RT_SETUP_DB} || first_existing(
    "$RT_HOME/sbin/rt-setup-database",
    (defined $RT_MAJOR && $RT_PATHS{SbinPath}
        ? "$RT_PATHS{SbinPath}/rt-setup-database-$RT_MAJOR" : ()));
our $START_TIMEOUT = $ENV{HETEST_START_TIMEOUT} || 120;

my %LIVE;    # refaddr => object, for END cleanup

sub first_existing { for (@_) { return $_ if defined $_ && -e $_ } return undef }

# RT's lib/RT/Generated.pm, read (not loaded): VERSION and the paths,
# relative ones resolved against $BasePath as RT's
# CanonicalizeGeneratedPaths does.
sub rt_generated {
    my ($home) = @_;
    my $text = slurp("$home/lib/RT/Generated.pm") // return ();
    my %p;
    $p{VERSION} = $1 if $text =~ /^\s*our\s+\$VERSION\s*=\s*'([^']+)'/m;
    while ($text =~ /^\s*\$(\w+)\s*=\s*'([^']*)'\s*;/mg) { $p{$1} = $2 }
    my $base = $p{BasePath} // $home;
    $base = $home unless File::Spec->file_name_is_absolute($base) && -d $base;
    for my $k (grep { /Path$|^Mason/ && $_ ne 'BasePath' } keys %p) {
        $p{$k} = File::Spec->catdir($base, $p{$k})
            unless File::Spec->file_name_is_absolute($p{$k});
    }
    return %p;
}

# One of RT's programs: libexec/ in Debian's layout, sbin/ in RT's own.
sub rt_program {
    my ($name) = @_;
    return first_existing("$RT_HOME/libexec/$name", "$RT_HOME/sbin/$name");
}

# "RT 5.0.3 (/usr/share/request-tracker5)", for notes and skip reasons.
sub rt_description {
    return 'RT ' . ($RT_VERSION // '(none)') . " ($RT_HOME)";
}

# ---------------------------------------------------------------- prereqs

# Returns a list of reasons why a throwaway RT with these features
# cannot be run here (empty list: all good).
sub missing {
    my ($class, %want) = @_;
    my @why;
    if (-f "$RT_HOME/lib/RT.pm" && $RT_VERSION) {
        push @why, "rt-server of " . rt_description() . " not found"
            unless $RT_SERVER && -f $RT_SERVER;
        push @why, "rt-setup-database of " . rt_description() . " not found"
            unless $RT_SETUP_DB && -f $RT_SETUP_DB;
    }
    else {
        push @why, "no RT in $RT_HOME (no lib/RT.pm and lib/RT/Generated.pm;"
            . ' install request-tracker5, or set HETEST_RT_HOME)';
    }
    push @why, 'Starman not installed' unless eval { require Starman; 1 };
    my $db = $want{db} || 'SQLite';
    if ($db eq 'Pg') {
        push @why, 'PostgreSQL server binaries not found'
            unless HETest::Servers::have_postgres();
        push @why, 'DBD::Pg not installed' unless eval { require DBD::Pg; 1 };
    } else {
        push @why, 'DBD::SQLite not installed' unless eval { require DBD::SQLite; 1 };
    }
    if ($want{redis}) {
        push @why, 'redis-server not found' unless HETest::Servers::have_redis();
        push @why, 'Apache::Session::Browseable::Redis not installed'
            unless eval { require Apache::Session::Browseable::Redis; 1 };
    }
    if ($want{blib} // 1) {
        my @inc = default_inc();
        push @why, "the module is not built (no RT/Extension/HealthEndpoint.pm in @inc): run perl Makefile.PL && make"
            unless grep { -f "$_/RT/Extension/HealthEndpoint.pm" } @inc;
    }
    # as root: is there a user to run the servers as?
    push @why, $@ =~ s/ at .*//sr unless eval { server_user(); 1 };
    return @why;
}

# To be called before planning: skip_all when the environment lacks RT
# (or a server needed), but under CI=true that is a failure.
sub require_or_skip {
    my ($class, %want) = @_;
    my @why = $class->missing(%want);
    return HETest::Servers::need_server(sub { !@why },
                                        'a real RT: ' . join('; ', @why));
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
        probe     => undef,       # Plugin('HETest::RTProbe'); default: as plugin
        local_plugin_path => undef,   # default: an empty dir of this RT's
        workers   => 2,
        webpath   => '',          # e.g. '/rt' (passed to rt-server --webpath and $WebPath)
        config    => {},          # name => value (see config_text)
        extra_config => '',       # raw perl appended to the site config
        redis     => 0,           # start a private redis-server
        redis_sessions => undef,  # default: same as redis
        redis_password => undef,  # redis-server requirepass, and in %WebSessionProperties
        redis_database => undef,  # database => N in %WebSessionProperties
        session_properties => undef,  # hashref: %WebSessionProperties as given
        port      => undef,
        host      => '127.0.0.1',
        sqlite_name => undef,     # default: absolute path in var/
        quiet     => 0,
        root_starts => 0,         # root starts rt-server, Starman drops to
                                  # the server user (--user/--group), and
                                  # var/ itself is root's, as in a source
                                  # install: only its log, Mason and
                                  # session dirs are the user's
        %opt,
    }, $class;
    $self->{inc} ||= [ default_inc() ];
    $self->{blib_inc} = [ @{ $self->{inc} } ];     # before the copy below
    $self->{probe} //= $self->{plugin};
    $self->{redis_sessions} = $self->{redis} unless defined $self->{redis_sessions};
    $self->{owner_pid} = $$;

    my $dir = scratch_dir('rt');
    chmod 0755, $dir;
    $self->{dir} = $dir;
    $LIVE{"$self"} = $self;

    for my $d (qw(etc etc/RT_SiteConfig.d var var/log var/mason_data var/session_data run lib
                  lib/probe/HETest plugins)) {
        make_path("$dir/$d");
    }
    # the test-only plugin that reports what a worker loaded
    (my $probe_src = $INC{'HETest/RT.pm'}) =~ s{RT\.pm\z}{RTProbe.pm};
    write_file("$dir/lib/probe/HETest/RTProbe.pm", slurp($probe_src)
        // croak("read $probe_src: $!"), 0644);

    if ($> == 0) {
        my %u = server_user();
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
        system('chown', '-R', "$u{uid}:$u{gid}", $dir) == 0 or croak "chown $dir failed";
        system('chmod', '-R', 'a+rX', "$dir/lib");
    }

    $self->{port} ||= free_port();
    return $self;
}

sub dir      { $_[0]{dir} }
sub port     { $_[0]{port} }
sub db       { $_[0]{db} }
sub rt_pid   { $_[0]{rt} && $_[0]{rt}->pid }
sub webpath  { $_[0]{webpath} }
sub base_url { my $s = shift; "http://$s->{host}:$s->{port}" . ($s->{webpath} || '') }
sub url      { my ($s, $p) = @_; $p = '' unless defined $p; $s->base_url . $p }
sub log_file { "$_[0]{dir}/var/log/rt.log" }
# the plugin's shared state: $RT::MasonDataDir/healthendpoint.state
sub state_file { "$_[0]{dir}/var/mason_data/healthendpoint.state" }
sub server_output_file { "$_[0]{dir}/run/rt-server.out" }
sub sqlite_file {
    my $s = shift;
    my $n = $s->{sqlite_name} // "$s->{dir}/var/rt5.sqlite";
    return File::Spec->file_name_is_absolute($n) ? $n : "$s->{dir}/var/$n";
}

sub note { my $s = shift; return if $s->{quiet}; print STDERR "# [rt] @_\n" if $ENV{HETEST_VERBOSE} }

# RT's plugin directories: $RT::LocalPluginPath (an empty dir of ours
# unless local_plugin_path names one) and $RT::PluginPath (always the
# empty one), so that no installed copy of the plugin is found.
sub empty_plugin_dir  { "$_[0]{dir}/plugins" }
sub local_plugin_path { $_[0]{local_plugin_path} // $_[0]->empty_plugin_dir }

# ---------------------------------------------------------------- PostgreSQL and redis

# The server in $self->{$key}: started again on its port after a stop, or
# made by $make the first time.
sub _start_server {
    my ($self, $key, $make) = @_;
    if (my $s = $self->{$key}) {
        croak "$s->{name} already running" if $s->running;
        $s->start;
    }
    else {
        $self->{$key} = $make->();
    }
    return 1;
}

sub _server_op {
    my ($self, $key, $op, @arg) = @_;
    my $s = $self->{$key} or return;
    return $s->$op(@arg);
}

sub start_pg {
    # Only the DBA: rt-setup-database creates RT's user and database.
    $_[0]->_start_server(pg_server => sub {
        HETest::Servers::start_postgres(
            user => undef, superuser => 'postgres',
            superpassword => 'hetest-dba-' . int(rand 1e6),
            settings => { max_connections => 50, shared_buffers => '32MB' });
    });
}

sub start_redis {
    my $pw = $_[0]{redis_password};
    $_[0]->_start_server(redis_server => sub {
        HETest::Servers::start_redis(defined $pw ? (requirepass => $pw) : ());
    });
}

sub stop_pg       { $_[0]->_server_op(pg_server => 'stop') }
sub stop_redis    { $_[0]->_server_op(redis_server => 'stop') }
sub pg_running    { $_[0]->_server_op(pg_server => 'running') ? 1 : 0 }
sub redis_running { $_[0]->_server_op(redis_server => 'running') ? 1 : 0 }
sub pg_port       { $_[0]->_server_op(pg_server => 'port') }
sub redis_port    { $_[0]->_server_op(redis_server => 'port') }

# Freeze/thaw the whole PostgreSQL process group (postmaster and every
# backend): connections hang instead of being refused, which exercises
# the check's timeout.
sub freeze_pg    { $_[0]->_server_op(pg_server => 'sigstop', group => 1) }
sub thaw_pg      { $_[0]->_server_op(pg_server => 'sigcont', group => 1) }
sub freeze_redis { $_[0]->_server_op(redis_server => 'sigstop') }
sub thaw_redis   { $_[0]->_server_op(redis_server => 'sigcont') }

# One command (after AUTH/SELECT as configured); returns the reply
# (arrays as array refs), croaks on an error reply.
sub redis_cmd {
    my ($self, @cmd) = @_;
    my $r = HETest::Servers::resp_command(host => '127.0.0.1',
        port => $self->redis_port, password => $self->{redis_password},
        database => $self->{redis_database}, cmd => \@cmd, timeout => 3);
    croak "redis error: $r->{error}" if ref $r eq 'HASH';
    return $r;
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
    $t .= "\$RT::LocalPluginPath = " . perl_value($self->local_plugin_path) . ";\n";
    $t .= "\$RT::PluginPath = " . perl_value($self->empty_plugin_dir) . ";\n";
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
            DatabasePort     => $self->pg_port,
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
            server => "127.0.0.1:" . ($self->redis_port // 0),
            (defined $self->{redis_password} ? (password => $self->{redis_password}) : ()),
            ($self->{redis_database} ? (database => $self->{redis_database}) : ()),
        };
    }
    %c = (%c, %{ $self->{config} });
    for my $k (sort keys %c) {
        $t .= config_line($k, $c{$k});
    }
    # the probe first: the innermost wrapper, which health probes never reach
    $t .= "Plugin('HETest::RTProbe');\n" if $self->{probe};
    $t .= "Plugin('RT::Extension::HealthEndpoint');\n" if $self->{plugin};
    $t .= $self->{extra_config} if $self->{extra_config};
    $t .= "1;\n";
    return $t;
}

sub write_config {
    my $self = shift;
    my $f = "$self->{dir}/etc/RT_SiteConfig.pm";
    return write_file($f, $self->config_text, 0644);
}

sub rt_env {
    my $self = shift;
    my @inc = grep { -d } @{ $self->{inc} },
        ($self->{probe} ? "$self->{dir}/lib/probe" : ());
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
        push @cmd, '--dba', 'postgres', '--dba-password', $self->{pg_server}->superpassword;
    } else {
        push @cmd, '--force';    # SQLite: no DBA password to prompt for
    }
    my $t0 = time;
    # As root, as root: RT's own install (make fixperms) leaves the schema
    # files readable by root alone (/opt/rt6/etc/schema.Pg is 0400); what
    # it creates here (RT's log, the SQLite file) goes to the server user.
    eval {
        run_cmd(cmd => \@cmd, env => $self->rt_env, dir => $self->{dir},
                log => "$self->{dir}/run/rt-setup-database.log",
                as_user => 0, timeout => 400, tail => 40);
    } or croak "rt-setup-database failed: $@";
    if ($> == 0) {
        my %u = server_user();
        system('chown', '-R', "$u{uid}:$u{gid}", $self->{dir}) == 0
            or croak "chown -R $self->{dir} failed";
    }
    $self->{db_init_seconds} = time - $t0;
    $self->{db_initialised} = 1;
}

sub dbh {
    my $self = shift;
    require DBI;
    if ($self->{db} eq 'Pg') {
        return DBI->connect('dbi:Pg:dbname=rt5;host=127.0.0.1;port=' . $self->pg_port,
            'postgres', $self->{pg_server}->superpassword, { RaiseError => 1, PrintError => 0, AutoCommit => 1 });
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
    $self->start_redis if $self->{redis} && !$self->{redis_server};
    $self->start_db unless $self->{db} ne 'Pg' || $self->{pg_server};
    $self->init_db;
    $self->start_rt;
    return $self;
}

sub start_rt {
    my $self = shift;
    croak 'RT already running' if $self->rt_running;
    $self->write_config;
    if ($self->{root_starts} && $> == 0) {     # after rt-setup-database
        chown 0, 0, "$self->{dir}/var" or croak "chown $self->{dir}/var: $!";
        chmod 0755, "$self->{dir}/var";
    }
    # fresh output file per start, but keep RT's log (tests read it)
    unlink $self->server_output_file;
    $self->{log_mark} = -s $self->log_file || 0;
    my ($host, $port) = @$self{qw(host port)};
    # ready = answers HTTP on a static file (which creates no session)
    my $http = HTTP::Tiny->new(timeout => 5, max_redirect => 0);
    my $probe = $self->url('/static/images/bpslogo.png');
    my $t0 = time;
    $self->{rt} = eval {
        HETest::Servers::start_starman(
            name => 'rt-server', host => $host, port => $port,
            workers => $self->{workers}, dir => $self->{dir},
            log => $self->server_output_file, env => $self->rt_env,
            cmd => [ $^X, $RT_SERVER, '--server', 'Starman',
                     '--host', $host, '--port', $port,
                     '--workers', $self->{workers},
                     ($self->{webpath} ? ('--webpath', $self->{webpath}) : ()),
                     $self->_user_args ],
            ($self->{root_starts} && $> == 0 ? (as_user => 0) : ()),
            ready => sub { port_open($port, $host)
                           && $http->get($probe)->{status} != 599 },
            ready_timeout => $START_TIMEOUT,
        );
    } or croak "RT did not become ready within ${START_TIMEOUT}s: "
        . ($@ =~ s/\n.*//sr) . "\n" . $self->diagnostics;
    $self->{rt_pid} = $self->{rt}->pid;     # (tests read it)
    $self->{rt_start_seconds} = time - $t0;
    return 1;
}

# Starman's own privilege drop, for root_starts.
sub _user_args {
    my ($self) = @_;
    return () unless $self->{root_starts} && $> == 0;
    my %u = server_user();
    my $group = getgrgid($u{gid}) // $u{gid};
    return ('--user', $u{name}, '--group', $group);
}

sub stop_rt {
    my $self = shift;
    my $rt = delete $self->{rt} or return;
    delete $self->{rt_pid};
    # Starman: TERM to the master stops the workers too (the group kill
    # in stop catches leftovers).
    $rt->stop;
}

sub rt_running { my $rt = $_[0]{rt}; $rt && $rt->running ? 1 : 0 }

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
    return join '', log_tail($self->server_output_file, 40),
        log_tail($self->log_file, 40),
        ($self->{pg_server} ? log_tail($self->{pg_server}->log, 15) : ());
}

# ---------------------------------------------------------------- HTTP checks

# Shared assertions for the health endpoints (Test::More must be loaded).
#   $rt->http                       HTTP::Tiny without cookie jar
#   $rt->check_ping($path, $name)   GET+HEAD: 200 text/plain "pong"
#   $rt->check_status($path, \%checks, $code, $name)
#   $rt->check_405($path, $name)
sub http {
    my $s = shift;
    # no keep-alive: Starman closes an idle connection after 1 s, and a
    # request sent on it just then fails (HTTP::Tiny does not retry it)
    return $s->{http} ||= HTTP::Tiny->new(timeout => 15, max_redirect => 0, keep_alive => 0,
        agent => 'hetest/1');
}

# One request on a fresh connection (Connection: close); returns all the
# bytes the server sent (to see that a HEAD response has no body).
sub raw_request {
    my ($s, $method, $path) = @_;
    return HETest::Proc::http_raw($s->{host}, $s->{port}, $method,
                                  ($s->{webpath} || '') . $path);
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

# ---------------------------------------------------------------- what RT loaded

# What the worker serving the request loaded, as HETest::RTProbe reports
# it (a hash; see t/lib/HETest/RTProbe.pm).  $base: another front end's
# base URL (Apache, nginx) instead of rt-server's.
sub probe {
    my ($self, $base) = @_;
    croak 'this RT runs without HETest::RTProbe' unless $self->{probe};
    my $url = ($base // $self->base_url) . '/hetest/probe';
    my $r = HTTP::Tiny->new(timeout => 15)->get($url);
    croak "GET $url: $r->{status} $r->{content}" unless $r->{status} == 200;
    require JSON::PP;
    return JSON::PP->new->decode($r->{content});
}

# rt-server's workers (the Starman master's children) and the
# HealthEndpoint.so files each has mapped.
sub worker_pids { my $rt = $_[0]{rt}; $rt ? $rt->worker_pids : () }

sub mapped_shared_objects {
    my ($self, $pid) = @_;
    open my $fh, '<', "/proc/$pid/maps" or return;
    my (%seen, @so);
    while (my $l = <$fh>) {
        push @so, $1 if $l =~ m{\s(/\S*/HealthEndpoint\.so)$} && !$seen{$1}++;
    }
    return @so;
}

sub _md5 {
    my ($f) = @_;
    require Digest::MD5;
    open my $fh, '<:raw', $f or return "($f: $!)";
    return Digest::MD5->new->addfile($fh)->hexdigest;
}

# One subtest: RT is the one HETEST_RT_HOME names, no plugin directory of
# RT holds a copy of the plugin, and the worker answering the probe (and,
# under rt-server, every worker, read from /proc/PID/maps) runs the module
# and its shared object from blib: from the lib dirs this RT was given
# (when root, copies of blib, compared byte for byte with it).
# %o: base (the probe through another front end), lib and arch (where
# the .pm and the .so must be instead, e.g. an installed plugin's lib).
sub check_loaded_from {
    my ($self, %o) = @_;
    my ($lib, $arch) = @{ $self->{inc} };
    $lib = $o{lib} if $o{lib};
    $arch = $o{arch} // $o{lib} // $arch;
    my $so_rel = 'auto/RT/Extension/HealthEndpoint/HealthEndpoint.so';
    my $name = $o{name} // ($o{lib} ? "the plugin is loaded from $lib" : 'the plugin is loaded from blib');
    Test::More::subtest($name => sub {
        my $p = eval { $self->probe($o{base}) };
        Test::More::ok($p, 'HETest::RTProbe answers from a worker') or return Test::More::diag($@);
        Test::More::is($p->{rt_version}, $RT_VERSION, "the worker runs RT $RT_VERSION (from $RT_HOME)");
        Test::More::is($p->{local_plugin_path}, $self->local_plugin_path,
            "\$RT::LocalPluginPath is $p->{local_plugin_path}");
        Test::More::is($p->{plugin_path}, $self->empty_plugin_dir, "\$RT::PluginPath is the empty dir");
        my @dirs = grep { m{/RT-Extension-HealthEndpoint/} } @{ $p->{plugin_lib_dirs} || [] };
        if ($o{lib}) {
            Test::More::is(scalar(@dirs), 1, 'one plugin lib dir of ours in RT->PluginDirs') or Test::More::diag("@dirs");
        }
        else {
            Test::More::is_deeply(\@dirs, [], 'RT found no plugin directory of ours');
        }
        Test::More::is($p->{module_file}, "$lib/RT/Extension/HealthEndpoint.pm", "\%INC: $p->{module_file}");
        Test::More::is_deeply($p->{shared_objects}, ["$arch/$so_rel"], "mapped: $arch/$so_rel")
            or Test::More::diag(join ' ', @{ $p->{shared_objects} || [] });
        my @workers = $o{base} ? () : $self->worker_pids;
        Test::More::ok(@workers || $o{base}, 'rt-server has workers: ' . join(' ', @workers));
        for my $pid (@workers) {
            Test::More::is_deeply([ $self->mapped_shared_objects($pid) ], ["$arch/$so_rel"],
                "worker $pid (/proc/$pid/maps): the same");
        }
        if (!$o{lib} && $self->{blib_inc}[1] && $self->{blib_inc}[1] ne $arch) {
            my %pair = ("$lib/RT/Extension/HealthEndpoint.pm"
                            => "$self->{blib_inc}[0]/RT/Extension/HealthEndpoint.pm",
                        "$arch/$so_rel" => "$self->{blib_inc}[1]/$so_rel");
            for my $copy (sort keys %pair) {
                Test::More::is(_md5($copy), _md5($pair{$copy}), "$copy is a copy of $pair{$copy}");
            }
        }
    });
}

# Wait (bounded) until $code->() is true; returns its last value.
sub wait_until {
    my ($self, $timeout, $code) = @_;
    return HETest::Ps::wait_for($timeout, $code, 0.2);
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
    remove_dir($_) for grep { defined && -d } $self->{dir},
        map { $_->dir } grep { defined } @$self{qw(pg_server redis_server)};
    delete $LIVE{"$self"};
    $self->{dir} = undef;
}

sub DESTROY { my $s = shift; local ($?, $!, $@); $s->cleanup if $s->{dir} }

# Before HETest::Proc's END (which stops whatever is left).
END {
    local ($?, $!, $@);
    $_->cleanup for values %LIVE;
}

1;
