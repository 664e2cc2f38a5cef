package RT::Extension::HealthEndpoint;

use strict;
use warnings;

our $VERSION = '0.02';

require XSLoader;
XSLoader::load('RT::Extension::HealthEndpoint', $VERSION);

my $PREFIX = 'RT::Extension::HealthEndpoint: ';

my %WRAP_OPTIONS = map { $_ => 1 } qw(
    ping_path status_path namespace timeout cache_seconds allow_from
    db db_check check_redis redis logger state_file
);

# The core, usable by any PSGI application: RT's glue below only maps
# RT's config onto these options.  Values are checked once, in C; here
# only the shape of the arguments is.
sub wrap {
    my ($class, $app, %opt) = @_;

    _need_code($app, 'the PSGI app', 0);
    for my $k (sort keys %opt) {
        die "${PREFIX}wrap: unknown option '$k'\n" unless $WRAP_OPTIONS{$k};
    }
    _need_code($opt{logger}, 'logger', 1);
    _need_code($opt{db_check}, 'db_check', 1);
    my $logger = $opt{logger} || sub { warn "[$_[0]] $_[1]\n" };
    # a logger that dies must not take the wrapper down with it
    my $log = sub {
        my ($level, $message) = ($_[0], $PREFIX . $_[1]);
        local $@;
        return if eval { $logger->($level, $message); 1 };
        chomp(my $err = $@);
        warn "[$level] $message (logger failed: $err)\n";   # as the C side
    };

    my @pairs;
    for my $k (qw(ping_path status_path namespace timeout cache_seconds)) {
        push @pairs, $k => $opt{$k} if defined $opt{$k};
    }
    push @pairs, _allow_pairs($opt{allow_from});
    push @pairs, _db_pairs($opt{db}, $log);
    push @pairs, _redis_pairs($opt{redis}, $opt{check_redis}, $log);
    return $class->_new($app, $logger, $opt{db_check}, \@pairs,
        $opt{state_file});
}

# A code reference, blessed or not (a PSGI app may be an object).
sub _need_code {
    my ($v, $what, $optional) = @_;
    return if $optional && !defined $v;
    require Scalar::Util;
    my $type = Scalar::Util::reftype($v) // '';
    die "${PREFIX}wrap: $what must be a code reference\n" unless $type eq 'CODE';
}

# HealthEndpoint_AllowFrom: a list, or one string of entries separated by
# commas and/or blanks (split in C).  Unset, undef, '' or [] mean no
# allowlist; anything else that is configured but unusable (a hash, a
# reference inside the list) denies everyone: undef reaches C as such.
sub _allow_pairs {
    my ($v) = @_;
    return () if !defined $v || (!ref $v && $v eq '')
        || (ref $v eq 'ARRAY' && !@$v);
    return (allow_from => $v) unless ref $v;
    if (ref $v eq 'ARRAY') {
        return map { (allow_from => (ref $_ ? undef : $_)) } @$v;
    }
    return (allow_from => undef);       # C says why, once
}

sub _db_pairs {
    my ($db, $log) = @_;
    $db = _hash($db, 'db', $log) or return ();
    my %db = %$db;
    my $extra = _hash(delete $db{extra}, 'DatabaseExtraDSN', $log) || {};
    if (($db{type} // '') eq 'SQLite' && defined $db{name} && length $db{name}) {
        require File::Spec;
        if (!File::Spec->file_name_is_absolute($db{name})) {
            # resolved once, now: the checker may run in another directory
            my $abs = File::Spec->rel2abs($db{name});
            $log->('info', "DatabaseName '$db{name}' for SQLite resolved to '$abs'");
            $db{name} = $abs;
        }
    }
    return ((map { ("db.$_" => $db{$_}) } sort keys %db),
            (map { ("db.extra.$_" => $extra->{$_}) } sort keys %$extra));
}

# check_redis: undef means "when a redis hash is given" (redis_auto); 0, 1
# or anything else is for C to accept or reject, as every redis.* key.
sub _redis_pairs {
    my ($redis, $check, $log) = @_;
    $redis = _hash($redis, 'redis', $log);
    my @pairs = (redis_auto => ($redis ? 1 : 0), check_redis => $check);
    return @pairs unless $redis;
    for my $k (sort keys %$redis) {
        if ($k eq 'sentinels') {
            my $s = $redis->{sentinels};
            push @pairs, map { ('redis.sentinel' => $_) }
                ref $s eq 'ARRAY' ? @$s : defined $s ? ($s) : ();
        } else {
            push @pairs, "redis.$k" => $redis->{$k};
        }
    }
    return @pairs;
}

sub _hash {
    my ($v, $name, $log) = @_;
    return undef unless defined $v;
    return $v if ref $v eq 'HASH';
    $log->('error', "$name: expected a hash reference, got '$v'; ignored");
    return undef;
}

# ---- RT glue ---------------------------------------------------------------

# The keys of %WebSessionProperties that say where Redis is (Redis.pm's
# names); the others tune RT's own client.
my %REDIS_KEYS = map { $_ => 1 }
    qw(server sock username password database sentinels service);

# RT calls this once per plugin, in @Plugins order, when it builds its PSGI
# app (in the master process, before Starman forks): read the config here,
# open nothing.  It must never die, or RT would not start.
sub PSGIWrap {
    my ($class, $app) = @_;
    my $wrapped = eval { $class->wrap($app, $class->_options_from_rt) };
    return $wrapped if $wrapped;
    my $err = $@ || 'unknown error';
    chomp $err;
    $err =~ s/^\Q$PREFIX\E//;
    _rt_log('error', "${PREFIX}disabled, the wrapped app is used as is: $err");
    return $app;
}

sub _rt_log {
    my ($level, $message) = @_;
    if (RT->can('Logger') && RT->Logger) {
        RT->Logger->log(level => $level, message => $message);
    } else {
        warn "[$level] $message\n";
    }
}

sub _rt_get {
    my $name = shift;
    # scalar context: a hash option comes back as a hashref (list context
    # would give (undef) for an unset one)
    return scalar RT->Config->Get($name);
}

sub _options_from_rt {
    my ($class) = @_;
    my %opt = (logger => \&_rt_log);

    my %map = (
        ping_path     => 'HealthEndpoint_PingPath',
        status_path   => 'HealthEndpoint_StatusPath',
        timeout       => 'HealthEndpoint_Timeout',
        cache_seconds => 'HealthEndpoint_CacheSeconds',
        allow_from    => 'HealthEndpoint_AllowFrom',
    );
    for my $k (keys %map) {
        my $v = _rt_get($map{$k});
        $opt{$k} = $v if defined $v;
    }
    # '' claims no namespace; undef (unset) keeps the default
    my $ns = _rt_get('HealthEndpoint_Namespace');
    $opt{namespace} = $ns if defined $ns;
    # One state per RT instance: beside Mason's cache, which the web user
    # can write in every layout (VarPath itself is root's in source installs)
    require File::Spec;
    my $state = _rt_get('HealthEndpoint_StateFile');
    my $default = defined $RT::MasonDataDir
        ? File::Spec->catfile($RT::MasonDataDir, 'healthendpoint.state') : undef;
    if (defined $state && !File::Spec->file_name_is_absolute($state)) {
        # relative to what? Each server has its own working directory
        _rt_log('error', "${PREFIX}\$HealthEndpoint_StateFile '$state' is not "
            . 'an absolute path; using ' . ($default // 'no state file'));
        $state = undef;
    }
    $opt{state_file} = $state // $default;

    my $type = _rt_get('DatabaseType');
    my $name = _rt_get('DatabaseName');
    if (defined $type && $type eq 'SQLite' && defined $name) {
        # as RT::Handle::BuildDSN: a relative name lives under VarPath
        $name = File::Spec->catfile($RT::VarPath, $name)
            unless File::Spec->file_name_is_absolute($name);
    }
    $opt{db} = {
        type     => $type,
        host     => _rt_get('DatabaseHost'),
        port     => _rt_get('DatabasePort'),
        name     => $name,
        user     => _rt_get('DatabaseUser'),
        password => _rt_get('DatabasePassword'),
        extra    => _rt_get('DatabaseExtraDSN'),
    };
    # RT's own SQLite file must hold RT's tables, not merely exist
    $opt{db}{require_table} = 'Tickets' if defined $type && $type eq 'SQLite';
    $opt{db_check} = $class->_dbi_check
        if defined $type && $type eq 'Oracle';

    my $session_class = _rt_get('WebSessionClass');
    my $auto = (defined $session_class && $session_class =~ /Redis/) ? 1 : 0;
    my $check = _rt_get('HealthEndpoint_CheckRedis');
    $opt{check_redis} = $check;
    # %WebSessionProperties describe Redis when the sessions are there, or
    # when the admin asks for the Redis check by hand
    if ($auto || (defined $check && $check eq '1')) {
        my $props = _rt_get('WebSessionProperties');
        # only where Redis is; the rest (reconnect, every, ...) tunes RT's
        # own client and means nothing to a check
        $opt{redis} = { map { ($_ => $props->{$_}) }
                        grep { $REDIS_KEYS{$_} }
                        ref $props eq 'HASH' ? keys %$props : () };
    }
    return %opt;
}

# Oracle has no native backend: connect through DBI with RT's own DSN.
# The core passes the seconds left before the deadline.  DBD::Oracle blocks
# in C, where perl's deferred ("safe") signals would wait for it to return,
# so the alarm is installed with POSIX::sigaction, as DBI's docs advise.
sub _dbi_check {
    return sub {
        my ($seconds) = @_;
        require DBI;
        require POSIX;
        require Time::HiRes;
        require RT::Handle;
        my $handle = RT::Handle->new;
        $handle->BuildDSN;
        my $old = POSIX::SigAction->new;
        POSIX::sigaction(POSIX::SIGALRM(),
            POSIX::SigAction->new(sub { die "timed out after $seconds s\n" }),
            $old);
        my $ok = eval {
            Time::HiRes::alarm($seconds > 0 ? $seconds : 0.001);
            my $dbh = DBI->connect($handle->DSN, _rt_get('DatabaseUser'),
                _rt_get('DatabasePassword'),
                { RaiseError => 1, PrintError => 0, AutoCommit => 1 });
            my ($one) = $dbh->selectrow_array('SELECT 1 FROM DUAL');
            $dbh->disconnect;
            $one;
        };
        my $err = $@;
        Time::HiRes::alarm(0);
        POSIX::sigaction(POSIX::SIGALRM(), $old);
        die $err if $err;
        return $ok;
    };
}

1;

__END__

=head1 NAME

RT::Extension::HealthEndpoint - session-free health checks for Request Tracker

=head1 SYNOPSIS

In F<RT_SiteConfig.pm>:

    Plugin('RT::Extension::HealthEndpoint');

    # all optional
    Set($HealthEndpoint_PingPath,     '/healthz/ping');
    Set($HealthEndpoint_StatusPath,   '/healthz/status');
    Set($HealthEndpoint_Namespace,    '/healthz');  # others under it: 404
    Set($HealthEndpoint_Timeout,      2);      # seconds, fractions allowed
    Set($HealthEndpoint_CacheSeconds, 1);      # 0: every request waits
    Set($HealthEndpoint_CheckRedis,   undef);  # undef auto, 0 never, 1 always
    Set($HealthEndpoint_AllowFrom,    ['10.0.0.0/8', '::1']);
    Set($HealthEndpoint_StateFile,    '/var/cache/rt/healthendpoint.state');

Then:

    $ curl http://rt.example.com/healthz/ping
    pong
    $ curl http://rt.example.com/healthz/status
    {"checks":{"database":"ok","redis":"skipped"},"status":"ok"}

Outside RT, around any PSGI application:

    use RT::Extension::HealthEndpoint;
    my $app = RT::Extension::HealthEndpoint->wrap($psgi_app,
        db     => { type => 'Pg', host => '127.0.0.1', name => 'app',
                    user => 'app', password => 'secret' },
        redis  => { server => '127.0.0.1:6379' },
        logger => sub { my ($level, $message) = @_; warn "$message\n" },
    );

=head1 DESCRIPTION

RT creates a web session for every request that reaches its Mason
handler, C</NoAuth/> pages included, so a load balancer probing RT every
few seconds fills the session store.  This extension answers two health
paths in RT's PSGI layer instead: RT calls C<PSGIWrap> for each plugin when
it builds its PSGI app, and the wrapper returned here sees each request
before Mason (and so before any session exists).

The wrapper is an XSUB written in C.  For any other path it hands the
request, untouched, to RT and returns RT's response unchanged, at the cost
of one hash lookup.  The checks are native: libpq for PostgreSQL,
MariaDB Connector/C or libmysqlclient for MySQL and MariaDB, libsqlite3 for
SQLite, hiredis for Redis.  Oracle is checked through DBI with RT's own
DSN; it is the one non-native path.  They run in one checker process per
RT instance, never in RT's workers; see L</HOW THE STATUS CHECK WORKS>.

=head1 INSTALLATION

    perl Makefile.PL RTHOME=/opt/rt6     # says where it will install
    make
    make test                            # optional; starts its own servers
    make install

Where C<make install> puts the files:

=over

=item RT installed from source (F</opt/rt4>, F</opt/rt5>, F</opt/rt6>)

C<RTHOME=/opt/rt6> installs into that RT's C<$LocalPluginPath>,
F</opt/rt6/local/plugins>.  F<Makefile.PL> reads it from RT's
F<lib/RT/Generated.pm>, where a source install keeps it relative
(F<local/plugins>), and resolves it against C<$BasePath> as RT does.

=item Debian's C<request-tracker5> or C<request-tracker4>

C<RTHOME=/usr/share/request-tracker5> installs into
F</usr/local/share/request-tracker5/plugins> (with C<4>,
F</usr/local/share/request-tracker4/plugins>).

=item A plugin directory named directly

C<RT_PLUGIN_DIR=/some/plugins> installs into that directory, which must
be one RT looks in: its C<$LocalPluginPath> or its C<$PluginPath>.

=back

In each case the files go into
F<< <plugin dir>/RT-Extension-HealthEndpoint/ >>: the module and its
shared object under F<lib/>, which RT adds to C<@INC> for the plugin, and
this documentation as a man page under F<man/>.  No F<.packlist> or
F<perllocal.pod> is written.  C<RTHOME> and C<RT_PLUGIN_DIR> may also be
set in the environment.  Without either, C<make install> installs into
Perl's F<site_perl> like any module, which is enough when RT runs on that
perl.

Then enable the plugin in F<RT_SiteConfig.pm>:

    Plugin('RT::Extension::HealthEndpoint');

On Debian, put that line in a file in
F</etc/request-tracker5/RT_SiteConfig.d/> whose name ends in F<.pm>
(others are not read), for instance F<90-healthendpoint.pm>, and make it
readable by the web server's user (C<www-data>).

Clear the Mason cache, C<rm -rf E<lt>MasonDataDirE<gt>/obj>:

    rm -rf /opt/rt6/var/mason_data/obj                    # source install
    rm -rf /var/cache/request-tracker5/mason_data/obj     # Debian

and restart RT: the web server (C<systemctl restart apache2>), or for an
nginx setup on Debian the FastCGI service (C<systemctl restart rt5-fcgi>).

The documentation of an installed plugin is read from its directory:

    perldoc /opt/rt6/local/plugins/RT-Extension-HealthEndpoint/lib/RT/Extension/HealthEndpoint.pm
    man -M /opt/rt6/local/plugins/RT-Extension-HealthEndpoint/man RT::Extension::HealthEndpoint

To uninstall, remove the C<Plugin(...)> line, then the plugin directory
(F<< <plugin dir>/RT-Extension-HealthEndpoint >>) and the state files
(F<$MasonDataDir/healthendpoint.state*>), clear the Mason cache and
restart RT.  C<make uninstall> is no help for a plugin install, which
writes no F<.packlist>; for a F<site_perl> install it lists the installed
files from the F<.packlist> (current MakeMaker no longer deletes them).

=head1 CONFIGURATION

=over

=item C<$HealthEndpoint_PingPath> (default C</healthz/ping>)

=item C<$HealthEndpoint_StatusPath> (default C</healthz/status>)

Compared byte for byte with C<PATH_INFO>, which is relative to RT's
C<$WebPath>: with C<$WebPath> C</rt> the default ping URL is
C</rt/healthz/ping>.  The query string is ignored.  A path must start with
C</> and hold no spaces, C<?> or C<#>; the two must differ.

=item C<$HealthEndpoint_Namespace> (default C</healthz> with the default paths)

A directory of the module's own: every other request under it
(C</healthz>, C</healthz/>, C</healthz/ping/>, C</healthz/anything>) gets
a fixed C<404>, so that a probe with a typo never reaches RT (whose C<302>
to the login page counts as success for Kubernetes, and creates a
session).  With custom paths no directory is claimed unless named here;
C<''> claims none even with the default paths.  One of RT's own top-level
directories (C</NoAuth>, C</REST>, C</static>, C</Helpers>,
C</SelfService>, C</m>, C</Admin>, ...) is refused at startup (logged;
no directory is claimed then).  Case
variants and C<//> prefixes stay RT's.

=item C<$HealthEndpoint_Timeout> (default 2)

Seconds, fractions allowed, above 0 and at most 300 (a value outside
that range is logged and the default used).  The deadline for the
whole status check: connect, authentication and query of each backend.
Below 10 ms a warning is logged: no check over a network finishes in that
time.

=item C<$HealthEndpoint_CacheSeconds> (default 1)

A result younger than this is the answer, at once.  One younger than
C<CacheSeconds + Timeout> is the answer too, and a new run is asked for;
an older one (or none yet) makes the request ask for a run and wait for
it, at most until its deadline.  Fractions allowed.  C<0>: every status
request joins the run in progress or starts one, and waits for its end
(workers then wait, up to C<Timeout>).  However many requests come, there
is at most one run at a time for the whole instance.  At most 3600.

=item C<$HealthEndpoint_CheckRedis> (default undef)

C<undef>: check Redis when C<$WebSessionClass> names a Redis-backed
session class (C<Apache::Session::Redis>,
C<Apache::Session::Browseable::Redis>).  C<0>: never (reported
C<skipped>).  C<1>: always.  The connection comes from
C<%WebSessionProperties>: C<server> (C<host:port>, default
C<127.0.0.1:6379>, C<[::1]:6379> for IPv6) or C<sock> (a unix socket),
C<username> and C<password> (AUTH; the ACL form when a username is set),
C<database> (SELECT), and C<sentinels> with C<service> (the sentinels are
asked for the master, which is then checked).  Only these keys are read;
the others (C<reconnect>, C<every>, C<cnx_timeout>, ...) tune RT's own
client and are left alone.  A replica answers C<PING>, so it reports
C<ok>.

=item C<$HealthEndpoint_AllowFrom> (default: no allowlist)

Addresses or networks matched against C<REMOTE_ADDR>; other clients get
C<403> and nothing is checked.  A list, or one string with entries
separated by commas and/or blanks: C<'10.0.0.0/8, 192.168.0.0/16'>.  Each
entry is an address (C<192.0.2.7>, C<2001:db8::7>), a network with a
prefix length (C<10.0.0.0/8>, C<2001:db8::/32>) or an IPv4 netmask
(C<192.168.1.0/255.255.255.0>); a zone (C<fe80::1%eth0>) only on an IPv6
link-local address.  An IPv4 client seen as C<::ffff:a.b.c.d> matches IPv4
entries.  Each entry that is dropped is logged, then the list in use.
Unset, C<undef>, C<''> or C<[]> mean no allowlist.  An allowlist that was
set but has no valid entry B<denies everyone> (fails closed).  Behind a
reverse proxy on the same host C<REMOTE_ADDR> is the proxy's address, and
a loopback entry then admits everyone: filter at the proxy, or have RT
trust C<X-Forwarded-For>.

=item C<$HealthEndpoint_StateFile> (default F<$MasonDataDir/healthendpoint.state>)

The file through which every process of the instance shares the result
and elects the checker (with F<I<file>.lock> beside it).  An absolute
path (a relative one, or C<''>, is logged and the default used), on a
local file system, in a directory the web server's user can write (Mason's
data directory is, in Debian's package and in source installs, where
C<$VarPath> itself belongs to root).  Created once with mode 0600; never
delete or truncate it while RT runs.

=back

The database check uses RT's own C<$DatabaseType>, C<$DatabaseHost>,
C<$DatabasePort>, C<$DatabaseName>, C<$DatabaseUser>,
C<$DatabasePassword> and C<%DatabaseExtraDSN> (libpq conninfo keys such as
C<sslmode> for Pg; the DBD::mysql C<mysql_ssl*> names, C<mysql_socket> and
C<mysql_compression> for MySQL/MariaDB).  An empty host means the client
library's default, a unix socket, as in RT.  A relative SQLite database
name is under RT's C<$VarPath>; the file is opened read-only, never
created, and must hold RT's C<Tickets> table.

For PostgreSQL a host list (C<Set($DatabaseHost, 'pg1,pg2')>, or C<host>
and C<port> lists in C<%DatabaseExtraDSN>) is tried as libpq's blocking
connect (DBD::Pg, so RT) tries it: one host at a time, each for
C<connect_timeout> seconds (below 2 counts as 2) or the time left, with
C<target_session_attrs> applied to each host (C<prefer-standby> makes a
second pass with C<any>); C<load_balance_hosts=random> is honoured with
libpq 16 or later, else ignored.  A hot standby reports C<ok> unless
C<target_session_attrs> asks for C<read-write> (or C<primary>): then it is
C<fail>, and a list finds the primary.

=head1 HOW THE STATUS CHECK WORKS

RT's worker processes never run a check and never start a thread.  The
checks run in one checker process per RT instance; the workers read its
latest result from the state file, mapped into every process of the
instance (Starman workers, recycled or not, and separately started
FastCGI processes alike).

=over

=item Who starts it

Whichever process needs a run and finds no live checker wins an C<flock>
on the F<.lock> file and forks it (twice, so that it is no worker's child:
init, or the nearest subreaper, reaps it when it exits), so it runs as
that worker's user, RT's web user.  It closes every descriptor it
inherited, resets the signal handlers, never returns to Perl (no
destructors, no C<END> blocks), and shows as
C<rt-healthendpoint checker (FILE)> in C<ps -ef>; its kernel name, which
C<ps -o comm> and C<pgrep> match, is C<rt-he-checker>.

=item How long it lives

It survives the worker that started it.  It exits within 2 s of the
server's master process (Starman's, Apache's), in the middle of a run
too; when no status request read the state for 5 minutes (this lease
holds everywhere, and is what ends it where there is no master, such as
C<spawn-fcgi -F N>); when the state file is replaced; and when a process
with a newer configuration or module version takes over, also in the
middle of a run: a reload of the FastCGI processes takes effect at their
first status request.  One that dies, or
whose heartbeat is 2 s old, is replaced by the next status request.

=item A run

Each check runs in a child process of the checker (C<rt-he-database>,
C<rt-he-redis>; C<rt-he-idle> while it waits for the next run), with
C<RLIMIT_DATA> at its size plus 64 MiB and C<RLIMIT_CPU>; a child still
checking 200 ms after the deadline is killed.  A child serves another run
only after a passed check, and at most 100 runs; it is forked before the
run that needs it, so that a run does not wait for a fork.  The first run
of a new child still pays the client library's start-up (OpenSSL's
configuration, for one).  A resolver that hangs, a stalled TLS handshake, a peer
announcing a reply of two billion elements, a SCRAM derivation of 2**31
rounds: none holds CPU, memory or a descriptor past the deadline + 1 s,
and none touches RT's processes.  An SQLite check never opens RT's file in
RT's process, where closing it would drop RT's own POSIX locks.

=item Without a usable state file

A file of another owner, writable by group or others, a symbolic link,
not a regular file, a path that is not absolute, or in a directory the
process cannot write: one line in RT's log says why (one per worker when
the master runs as root and leaves the file to them), and each process
runs a checker of its own.  RT always starts.  A process that builds RT's
app as root (a server that drops privileges later) leaves the file to its
first worker.  Outside RT, C<wrap> without
C<state_file> gives each process its own checker.

=back

If RT's workers themselves run as root (C<rt-server> without C<--user>),
so does the checker.  In a container, run an init that reaps orphans
(C<docker run --init>): a checker that exits is otherwise left as a
zombie.

=head1 USING IT WITHOUT RT

C<< RT::Extension::HealthEndpoint->wrap($app, %options) >> returns the
wrapping PSGI app; C<PSGIWrap> only maps RT's config onto these options:

=over

=item C<ping_path>, C<status_path>, C<namespace>, C<timeout>, C<cache_seconds>

As the C<$HealthEndpoint_*> options above.

=item C<allow_from>

As C<$HealthEndpoint_AllowFrom>: a list or one string.

=item C<db>

C<< { type => 'Pg'|'mysql'|'MariaDB'|'SQLite'|'Oracle', host, port, name,
user, password, require_table, extra => { ... } } >>.  Without it the
database check is C<skipped>.  A relative SQLite C<name> is resolved
against the current directory once, when C<wrap> is called, and logged;
an SQLite database must hold C<require_table> when given (RT's glue asks
for C<Tickets>), else at least one table.  An unknown key is logged.

=item C<db_check>

A code reference run for C<Oracle> in the checker's child process, given
the seconds left before the deadline: true is C<ok>, false or an
exception is C<fail>, and a true that comes after the deadline is
C<fail> too.

=item C<redis>, C<check_redis>

C<redis> takes the C<%WebSessionProperties> keys above (any other key is
logged and ignored).  RT's glue passes only those keys of
C<%WebSessionProperties>.  C<check_redis> C<0> never checks, C<1> always does; undef checks
when C<redis> is given.

=item C<state_file>

The shared state, as C<$HealthEndpoint_StateFile>; without it each
process has its own checker.

=item C<logger>

C<< sub { my ($level, $message) = @_; ... } >>; by default messages go to
C<warn>.

=back

C<wrap> dies, naming the argument, for a caller's mistake: an unknown
option, an app, C<logger> or C<db_check> that is not a code reference
(blessed ones are fine; an object that only overloads C<&{}> is not: pass
C<< sub { $obj->(@_) } >>).  Every bad I<value> is logged instead.  A
C<logger> that dies is caught; the message then goes to C<warn>.

=head1 RESPONSES

=over

=item Ping, C<GET> or C<HEAD>

C<200>, C<Content-Type: text/plain>, body C<pong>.  No I/O of any kind.

=item Status, C<GET> or C<HEAD>

C<Content-Type: application/json>, body exactly

    {"checks":{"database":"ok","redis":"ok"},"status":"ok"}

Each check is C<ok>, C<fail> or C<skipped>; C<status> is C<ok> unless a
check that ran failed, and the HTTP status is then C<200>, else C<503>.

=item Any other method on either path

C<405> with C<Allow: GET, HEAD>.  Methods are case-sensitive.

=item Anything else under the namespace, any method

C<404>, C<Content-Type: text/plain>, body C<not found>.

=item A client outside C<$HealthEndpoint_AllowFrom>

C<403>, body C<forbidden>, before any of the above.

=back

Every answer carries C<Cache-Control: no-store> and C<Content-Length>,
never a C<Set-Cookie>; C<HEAD> gets the same headers and an empty body.

=head1 DIAGNOSTICS

Messages go to RT's log (C<< RT->Logger >>), prefixed with
C<RT::Extension::HealthEndpoint:>.  Those about a check are written once
for the whole instance, by the first process that sees the change.

=over

=item C<database check failed (TYPE, SECONDS s): REASON> (error)

=item C<redis check failed (SECONDS s): REASON> (error)

A check turned to fail; REASON is the client library's text (refused,
authentication failed, NOAUTH, ...; control characters escaped), or
C<timed out after SECONDS s during PHASE> with the phase it was in
(resolving, connecting, authenticating, querying), or for a host list each
host and why.

=item C<database check still failing after SECONDS s (N failed runs): REASON> (error)

At most once a minute while it stays failed.

=item C<database check ok again after SECONDS s (N failed runs)> (warning)

It recovered.

=item C<shared state FILE: active> (info)

=item C<shared state FILE: set up by the first worker (this process runs as root)> (info)

At startup: where the state is, and whether it is in use.

=item C<the state file cannot be used (WHY); each process runs its own checker> (error)

Another owner, a symbolic link, writable by others, not a regular file,
not absolute, no write access to the directory: fix WHY (or set
C<$HealthEndpoint_StateFile>) and restart.  The endpoints work meanwhile,
with a checker per process.

=item C<$HealthEndpoint_StateFile 'PATH' is not an absolute path; using DEFAULT> (error)

Relative to what: each server has its own working directory.

=item C<cannot set up the health state (WHY); every status check reports fail> (error)

Not even a private state could be mapped (out of memory): the status
answers C<503> until the process is restarted; ping is unaffected.

=item C<cannot start the checker: ...> (error)

=item C<FILE.lock: ...> (error)

The checker could not be forked, or its lock file not opened or locked
(C<fork>, C<flock> and the system's reason).  Said once per cause per
process; the next status request tries again.

=item C<database check failed (...): the check process ended without a result during PHASE> (error)

The check's child process died (killed by someone, or by its
C<RLIMIT_DATA>/C<RLIMIT_CPU>) before it answered.

=item C<HealthEndpoint_Namespace: 'PATH' holds neither the ping nor the status path; it is claimed anyway ...> (warning)

One that is one of RT's own directories, or not a path, is refused with
the C<invalid value> line above, and no directory is claimed.

=item C<HealthEndpoint_PingPath and HealthEndpoint_StatusPath are both 'PATH'; using ...> (error)

=item C<DatabaseName 'NAME' for SQLite is not an absolute path; the database check will report fail> (error)

=item C<the Redis check is on but this build has no Redis backend ...> (error)

=item C<WebSessionProperties: 'sentinels' given without 'service'; the sentinels are ignored> (warning)

=item C<option 'KEY': value contains a NUL byte; ignored> (error)

=item C<OPTION: invalid value 'VALUE' (WHY); WHAT HAPPENS>

A setting was rejected at startup; WHAT HAPPENS names the default used,
or that the check fails (a Redis server), or that the entry is dropped.

=item C<HealthEndpoint_AllowFrom: no valid entry; every client gets 403 until it is fixed> (error)

=item C<HealthEndpoint_AllowFrom: allowing LIST> (info)

The allowlist as it is used.

=item C<OPTION: unknown setting ignored> (warning)

A key of C<%DatabaseExtraDSN>-like hashes (C<db>, C<redis>) that the
module does not know.

=item C<DatabaseType 'TYPE': this build has no TYPE backend ...>

The client library was missing when the extension was built.  Install it
(see L</BUILD REQUIREMENTS>), rebuild and reinstall.  Until then the
database check reports C<fail>.

=item C<disabled, the wrapped app is used as is: ...>

The wrapper could not be built; RT runs without the endpoints.

=back

=head1 BUILD REQUIREMENTS

A C compiler and, for each backend wanted, its client library:
C<libpq-dev>, C<libmariadb-dev> (or C<libmysqlclient-dev>),
C<libsqlite3-dev>, C<libhiredis-dev> on Debian.  F<Makefile.PL> builds the
backends it finds and says which; ping needs none.

=head1 SECURITY

The endpoints are unauthenticated by design.  Their bodies hold only the
fixed tokens above: no error text, host names, versions or timings; those
go to RT's log, with a peer's control characters escaped so that its text
cannot forge a log line.  A ping costs a hash lookup and a small response;
a status request reads the shared result.  The checks run one at a time
for the whole instance, at most once per C<$HealthEndpoint_CacheSeconds>
under any flood, each bounded by C<$HealthEndpoint_Timeout> and killed
200 ms after it.  A request that finds no fresh result waits for the run,
holding its worker for up to C<$HealthEndpoint_Timeout>; with
C<$HealthEndpoint_CacheSeconds> C<0> and requests always waiting, runs
follow each other back to back.

What fails closed: an allowlist set without a valid entry, or whose copy
could not be made, denies everyone; an invalid Redis server is a failing
check, never the default server; a state file of another owner, writable
by others or a symbolic link is not used; a namespace in RT's own
directories is refused.  Restrict who may reach the paths at the proxy,
or with C<$HealthEndpoint_AllowFrom>.

=head1 DEBIAN

With Debian's C<request-tracker5> packages, as root:

    perl Makefile.PL RTHOME=/usr/share/request-tracker5
    make && make install
    echo "Plugin('RT::Extension::HealthEndpoint');" \
        > /etc/request-tracker5/RT_SiteConfig.d/90-healthendpoint.pm
    chmod 0644 /etc/request-tracker5/RT_SiteConfig.d/90-healthendpoint.pm
    rm -rf /var/cache/request-tracker5/mason_data/obj
    systemctl restart apache2     # Apache (rt5-apache2: mod_fcgid or mod_perl)
    systemctl restart rt5-fcgi    # or nginx with rt5-fcgi: not nginx
    curl http://localhost/rt/healthz/ping

=over

=item The file in F<RT_SiteConfig.d> must end in F<.pm>

RT reads no other file there: a F<90-healthendpoint.conf> is ignored
without a word, and the health paths then reach RT's login page.  It must
also be readable by C<www-data>, or RT does not start at all.  Debian's
own files there are C<root:www-data 0640>; one holding only the C<Plugin>
line can be C<0644>.

=item Debian serves RT under F</rt>

The paths are relative to C<$WebPath>: the endpoints are
F</rt/healthz/ping> and F</rt/healthz/status>, in every probe too.

=item Which service to restart

Apache (C<rt5-apache2>, mod_fcgid or mod_perl): C<systemctl restart
apache2>, a full restart, not a graceful reload (mod_perl loads RT into
Apache's parent process).  nginx with C<rt5-fcgi>: RT runs in the
C<rt5-fcgi> service, so C<systemctl restart rt5-fcgi>; restarting nginx
changes nothing for the plugin.

=item nginx with rt5-fcgi

Debian's example, F</usr/share/doc/rt5-fcgi/examples/request-tracker5.conf>,
is a C<location> block: it goes inside a C<server { }> block, not into
F<conf.d> as its comment says.  Its C<expires epoch;> makes nginx replace
the endpoints' C<Cache-Control: no-store> by C<no-cache> plus an
C<Expires> in 1970 on their C<200> answers (C<503> and C<405> keep
C<no-store>).  To keep C<no-store>, put this next to it in the same
C<server { }> block (F<eg/nginx-healthz.conf> in the distribution):

=for comment eg/nginx-healthz.conf

    # nginx with Debian's rt5-fcgi: put this next to the contents of
    # /usr/share/doc/rt5-fcgi/examples/request-tracker5.conf, in the same
    # server { } block.  That example sets "expires epoch;" on everything
    # under /rt, which turns the endpoints' "Cache-Control: no-store" into
    # "no-cache" (plus an Expires header) on their 200 answers.  This longer
    # prefix takes the health paths past it, unchanged.
    location /rt/healthz/ {
    	include		/etc/nginx/fastcgi_params;
    	fastcgi_param	SCRIPT_NAME		"/rt";
    	fastcgi_pass	unix:/var/run/rt5-fcgi.sock;
    }

=item Uninstalling

Remove the configuration file, the plugin and its state files, and clear
the Mason cache:

    rm /etc/request-tracker5/RT_SiteConfig.d/90-healthendpoint.pm
    rm -rf /usr/local/share/request-tracker5/plugins/RT-Extension-HealthEndpoint
    rm -f /var/cache/request-tracker5/mason_data/healthendpoint.state*
    rm -rf /var/cache/request-tracker5/mason_data/obj

and restart as above.

=back

=head1 MONITORING AND LOAD BALANCERS

Use the ping to route traffic and for liveness: it needs nothing but a
running RT worker, so a database outage does not take every node out or
restart every pod.  Use the status for monitoring and readiness.  Make
every probe's timeout longer than C<$HealthEndpoint_Timeout> (default 2
s): a status request that waits for a run (the first one, or after a quiet
spell) answers at that deadline.  The ping never waits.  Under a
C<$WebPath> such as Debian's F</rt>, prefix the paths.

The configurations below are the files in F<eg/> of the distribution,
which its tests run against a real RT through a database outage; as they
are, they point at the RT of F<eg/demo> on 127.0.0.1:8080.

=head2 HAProxy

=for comment eg/haproxy.cfg

    # HAProxy in front of Request Tracker with RT::Extension::HealthEndpoint.
    #
    # As it is, this runs against eg/demo (RT on 127.0.0.1:8080):
    #     haproxy -db -f eg/haproxy.cfg
    # RT through HAProxy on http://127.0.0.1:8000/, the state of both
    # backends on http://127.0.0.1:8404/stats.

    global
        maxconn 256

    defaults
        mode http
        timeout connect 2s
        timeout client  60s
        timeout server  60s
        # longer than $HealthEndpoint_Timeout (default 2 s)
        timeout check   3s

    frontend rt
        bind 127.0.0.1:8000
        default_backend rt

    # The RT web servers: a server takes traffic while its workers answer the
    # ping (no database, no session).
    backend rt
        option httpchk
        http-check send meth GET uri /healthz/ping
        http-check expect string pong
        server rt1 127.0.0.1:8080 check inter 2s fall 2 rise 2

    # RT and what it depends on: the server here goes DOWN while
    # /healthz/status answers 503 (database or Redis unreachable).  Nothing is
    # routed to this backend; alert on it or read it from the stats page.
    backend rt_status
        option httpchk
        http-check send meth GET uri /healthz/status
        http-check expect status 200
        server rt1 127.0.0.1:8080 check inter 5s fall 2 rise 2

    listen stats
        bind 127.0.0.1:8404
        stats enable
        stats uri /stats
        stats refresh 10s

The C<rt> backend routes on the ping; the server of C<rt_status>, which
receives no traffic, goes DOWN while the status answers C<503>: alert on
it.  HAProxy 2.6 sends these checks as HTTP/1.0 without a C<Host>
header; behind name-based virtual hosts add C<ver HTTP/1.1 hdr Host
rt.example.com> to each C<http-check send>.

=head2 Nagios / monitoring-plugins

=for comment eg/check_http.txt

    # Nagios / Icinga / monitoring-plugins: RT's status endpoint.
    # Exit status 0 (OK) while RT answers 200 with "status":"ok", 2 (CRITICAL)
    # on a 503 (database or Redis unreachable), on anything else, or when RT
    # does not answer within 5 s (longer than $HealthEndpoint_Timeout, 2 s by
    # default).  check_curl takes the same options.  Against eg/demo as is.
    /usr/lib/nagios/plugins/check_http -H 127.0.0.1 -p 8080 -u /healthz/status -e 200 -s '"status":"ok"' -t 5
    /usr/lib/nagios/plugins/check_curl -H 127.0.0.1 -p 8080 -u /healthz/status -e 200 -s '"status":"ok"' -t 5

=head2 Icinga 2

=for comment eg/icinga2.conf

    // Icinga 2 objects for RT::Extension::HealthEndpoint.  They build on the
    // ITL's "http" CheckCommand (check_http from monitoring-plugins), so the
    // main config must include <itl> and <plugins>, as Icinga's default
    // icinga2.conf does.  Against eg/demo as is (RT on 127.0.0.1:8080).

    // OK while RT answers 200 with "status":"ok"; CRITICAL on a 503 (database
    // or Redis unreachable), on anything else, or after 5 s.
    object CheckCommand "rt-healthz" {
      import "http"
      vars.http_uri = "/healthz/status"
      vars.http_expect = "200"
      vars.http_string = "\"status\":\"ok\""
      // longer than $HealthEndpoint_Timeout (default 2 s)
      vars.http_timeout = 5
    }

    object Host "rt" {
      address = "127.0.0.1"
      check_command = "hostalive"
      vars.rt_port = 8080
    }

    apply Service "rt-status" {
      check_command = "rt-healthz"
      vars.http_port = host.vars.rt_port
      check_interval = 1m
      retry_interval = 15s
      assign where host.vars.rt_port
    }

    // Liveness of the web workers only: no database involved.
    apply Service "rt-ping" {
      check_command = "rt-healthz"
      vars.http_port = host.vars.rt_port
      vars.http_uri = "/healthz/ping"
      vars.http_string = "pong"
      check_interval = 1m
      retry_interval = 15s
      assign where host.vars.rt_port
    }

=head2 Prometheus blackbox exporter

The exporter's modules, then the Prometheus scrape jobs:

=for comment eg/blackbox.yml

    # prometheus-blackbox-exporter modules for RT::Extension::HealthEndpoint
    # (--config.file).  probe_success is 1 while the endpoint answers as
    # below, 0 otherwise.
    modules:
      # RT and what it depends on (database, Redis): 200 and "status":"ok"
      rt_status:
        prober: http
        # longer than $HealthEndpoint_Timeout (default 2 s)
        timeout: 5s
        http:
          method: GET
          valid_status_codes: [200]
          fail_if_body_not_matches_regexp:
            - '"status":"ok"'
          follow_redirects: false
          preferred_ip_protocol: ip4
      # an RT worker answers
      rt_ping:
        prober: http
        timeout: 5s
        http:
          method: GET
          valid_status_codes: [200]
          fail_if_body_not_matches_regexp:
            - '^pong$'
          follow_redirects: false
          preferred_ip_protocol: ip4

=for comment eg/prometheus.yml

    # Prometheus scrape jobs probing RT through the blackbox exporter
    # (eg/blackbox.yml) listening on 127.0.0.1:9115.
    scrape_configs:
      - job_name: rt_status
        metrics_path: /probe
        params:
          module:
            - rt_status
        static_configs:
          - targets:
              - http://127.0.0.1:8080/healthz/status
        relabel_configs:
          - source_labels: [__address__]
            target_label: __param_target
          - source_labels: [__param_target]
            target_label: instance
          - target_label: __address__
            replacement: 127.0.0.1:9115
      - job_name: rt_ping
        metrics_path: /probe
        params:
          module:
            - rt_ping
        static_configs:
          - targets:
              - http://127.0.0.1:8080/healthz/ping
        relabel_configs:
          - source_labels: [__address__]
            target_label: __param_target
          - source_labels: [__param_target]
            target_label: instance
          - target_label: __address__
            replacement: 127.0.0.1:9115

Alert on C<probe_success{job="rt_status"} == 0>.

=head2 Kubernetes

=for comment eg/kubernetes.yml

    # Kubernetes probes for RT::Extension::HealthEndpoint: part of the spec of
    # the container that runs RT (rt-server or Starman on port 8080, $WebPath
    # empty; with $WebPath /rt the paths start with /rt).
    #
    # Every timeoutSeconds is longer than $HealthEndpoint_Timeout (default
    # 2 s): a status request that waits for a run answers at that deadline,
    # and a hung database must be a 503, not a probe timeout.
    startupProbe:                # RT takes a few seconds to load
      httpGet:
        path: /healthz/ping
        port: 8080
      periodSeconds: 2
      timeoutSeconds: 3
      failureThreshold: 60
    livenessProbe:               # an RT worker answers; no database involved
      httpGet:
        path: /healthz/ping
        port: 8080
      periodSeconds: 10
      timeoutSeconds: 3
      failureThreshold: 3
    readinessProbe:              # RT's database (and Redis) answer too
      httpGet:
        path: /healthz/status
        port: 8080
      periodSeconds: 10
      timeoutSeconds: 3
      failureThreshold: 2

Never use the status for liveness: a database outage would restart every
pod.  As all pods share the database, the readiness probe takes them all
out of the Service together during an outage; to have RT answer with its
own error page then, use the ping for readiness too and alert on the
status from your monitoring.

=head1 BUGS

Please report bugs at
L<https://github.com/rt-extension-healthendpoint/RT-Extension-HealthEndpoint/issues>.

=head1 AUTHOR

RT-Extension-HealthEndpoint developers.

=head1 LICENSE

Copyright the RT-Extension-HealthEndpoint authors.  This program is free
software; you can redistribute it and/or modify it under the terms of the
GNU General Public License, version 2.

=cut
