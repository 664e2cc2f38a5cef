package HETest::Web;

=head1 NAME

HETest::Web - real web servers and monitoring clients around a throwaway RT

=head1 SYNOPSIS

    use lib 't/lib';
    use HETest::Web qw(:all);
    BEGIN { require_or_skip(web_missing('apache-fcgid')) }
    use Test::More;

    my $rt  = rt_for_web();                 # HETest::RT: Pg, WebPath /rt
    my $web = start_apache_fcgid($rt);      # Debian's apache2-fcgid.conf
    deployment_checks($rt, $web);           # the shared subtests
    $web->stop;

    my $hap = start_server($rt, name => 'haproxy', cmd => [...], port => ...);
    my $text = eg_template('haproxy.cfg', '127.0.0.1:8080' => "127.0.0.1:$port");

=head1 DESCRIPTION

The deployment tests (t/86 to t/88) run RT the way Debian ships it, under
Apache with mod_fcgid, under Apache with mod_perl 2, and under nginx with
spawn-fcgi, each from Debian's own configuration file (the RT_SITE_CONFIG
it names replaced) plus a private server config in the RT's temp dir: a free
port on 127.0.0.1, logs, pid and lock files in the temp dir, nothing in /etc
read for the server itself, no service touched.  As root every server runs
as the unprivileged user HETest::RT uses (nobody).  The RT underneath is an
L<HETest::RT> on a private PostgreSQL with the plugin loaded from the
built blib (copied into the temp dir when root).

The monitoring test (t/89) uses C<start_server>, C<eg_template> and the
skip helpers for HAProxy, the blackbox exporter, check_http/check_curl and
icinga2 against an rt-server.

Servers started here are stopped at END (before HETest::RT removes the temp
dir) and, should the test be killed, by a small watchdog process.

=head1 FUNCTIONS

=over

=item web_missing(@what)

Reasons (a list of strings, empty when all is there) why these can not run
here: C<'rt'> (HETest::RT with PostgreSQL), C<'apache-fcgid'>,
C<'apache-modperl'>, C<'nginx-fcgi'>, C<'haproxy'>, C<'check_http'>,
C<'check_curl'>, C<'blackbox'>, C<'icinga2'>.

=item require_or_skip(@reasons)

Before the plan: skip the test file with the reasons; under C<CI=true> one
failing test instead (a missing package is an error in CI).

=item subtest_requires(@reasons)

Inside a subtest: true when @reasons is empty; else skips the subtest
(outside CI) or fails it (CI=true) and returns false.

=item rt_for_web(%opt)

An L<HETest::RT> on PostgreSQL with C<$WebPath> C</rt>,
C<$HealthEndpoint_Timeout> 1 and C<$HealthEndpoint_CacheSeconds> 1, whose
port is the one the web server will listen on; the database is started and
initialised, rt-server is not.  %opt goes to HETest::RT->new.

=item start_apache_fcgid($rt), start_apache_modperl($rt), start_nginx_fcgi($rt)

Start that deployment and wait until RT answers the ping through it.
Return a server object (below).  start_nginx_fcgi's object has C<fixed>,
a second server block on C<fixed_port> that adds eg/nginx-healthz.conf.

=item start_server($rt, name => ..., cmd => [...], port => N, env => {...}, logs => [...], ready => sub {...})

Spawn a long-running program through C<< $rt->spawn >> (own process
group, unprivileged when root), wait until C<port> accepts connections
and C<ready> (optional) returns true.  Dies with the log tails otherwise.

=item eg_file($name), eg_template($name, $from => $to, ...)

The text of F<eg/$name>; the template replaces each literal C<$from> (all
occurrences) and dies if one does not occur, so that the test notices when
a snippet changes under it.

=item deployment_checks($rt, $web, %opt)

The subtests every deployment runs: ping and status (GET, HEAD), 405,
no session for 200 probes while C</NoAuth/Login.html> adds them, the
near-miss paths (TODO until issue 11's 404 lands), WebPath C</rt>, the
database stopped (503 within CacheSeconds + 2 x Timeout) and started
again.  %opt: C<cache_control_200> (what a 200 answer's Cache-Control
must be; default C<no-store>), C<expires_200> (an Expires header the
front end adds to 200 answers; default: none allowed).

=item http_get($url), http_head_raw($url), http_request($method, $url, %opt)

Requests on a fresh connection, no cookie jar.  http_head_raw returns every
byte the server sent for a HEAD.

=item poll($seconds, $code, $step), wait_for_status($url, $code, $since)

poll calls $code until it returns true or $seconds are over.
wait_for_status polls $url for the HTTP status $code for at most
CacheSeconds + 2 x Timeout after $since (when the database changed), then
waits until no worker can still answer from a result taken before $since.

=item run_as_server($rt, @cmd, { env => {...} })

Runs a command to completion as the server user; returns (exit code,
output).

=back

The server object: C<name>, C<port>, C<base> (C<http://127.0.0.1:port/rt>),
C<url($path)>, C<pid>, C<stop>, C<running>, C<logs>, C<log_tail>,
C<dir>.

=cut

use strict;
use warnings;

use Carp qw(croak);
use Cwd qw(abs_path);
use Exporter qw(import);
use File::Path qw(make_path);
use FindBin ();
use HTTP::Tiny;
use IO::Handle;
use IO::Socket::INET;
use POSIX ();
use Test::More ();
use Time::HiRes qw(sleep time);

use HETest::RT;

our @EXPORT_OK = qw(
    web_missing require_or_skip subtest_requires
    rt_for_web start_apache_fcgid start_apache_modperl start_nginx_fcgi
    start_server eg_file eg_template eg_dir deployment_checks
    http_get http_head_raw http_request poll wait_for_status run_as_server find_program
    server_user_group
);
our %EXPORT_TAGS = (all => \@EXPORT_OK);

# Test::More looks for $TODO in the package that calls it: this one.
our $TODO;

our $APACHE      = program(q(HETEST_APACHE), q(apache2), q(httpd));
our $APACHE_MODS = $ENV{HETEST_APACHE_MODULES} || '/usr/lib/apache2/modules';
our $NGINX       = program(q(HETEST_NGINX), q(nginx));
our $SPAWN_FCGI  = program(q(HETEST_SPAWN_FCGI), q(spawn-fcgi));
our $HAPROXY     = program(q(HETEST_HAPROXY), q(haproxy));
our $BLACKBOX    = program(q(HETEST_BLACKBOX), q(prometheus-blackbox-exporter), q(blackbox_exporter));
our $ICINGA2     = program(q(HETEST_ICINGA2), q(icinga2));
our $PLUGIN_DIR  = $ENV{HETEST_NAGIOS_PLUGINS} || '/usr/lib/nagios/plugins';
our $RT_ETC      = $ENV{HETEST_RT_ETC} || '/etc/request-tracker5';
our $RT_FCGI     = "$HETest::RT::RT_HOME/libexec/rt-server.fcgi";
our $NGINX_EXAMPLE = first_existing(
    '/usr/share/doc/rt5-fcgi/examples/request-tracker5.conf',
    '/usr/share/doc/rt5-fcgi/examples/request-tracker5.conf.gz');
our $FASTCGI_PARAMS = '/etc/nginx/fastcgi_params';
our $START_TIMEOUT = $HETest::RT::START_TIMEOUT;

# The settings the deployments run with (issue 11: tolerate timing by
# polling for up to CacheSeconds + 2 x Timeout).
our %HE_CONFIG = (HealthEndpoint_Timeout => 1, HealthEndpoint_CacheSeconds => 1);

sub first_existing { for (@_) { return $_ if defined && -e } return undef }

sub find_program {
    my ($name) = @_;
    return (-f $name && -x _) ? $name : undef if $name =~ m{/};
    for my $d (split(/:/, $ENV{PATH} || ''), qw(/usr/local/sbin /usr/sbin /sbin /usr/bin /bin)) {
        my $p = "$d/$name";
        return $p if -f $p && -x _;
    }
    return undef;
}

sub first_program { for (@_) { my $p = find_program($_); return $p if $p } return undef }

# The program named by $ENV{$var} (must be executable: set it to a bad path
# to see the skip), else the first of @names found.
sub program {
    my ($var, @names) = @_;
    return defined $ENV{$var} ? find_program($ENV{$var}) : first_program(@names);
}

sub eg_dir { return abs_path("$FindBin::Bin/../eg") // "$FindBin::Bin/../eg" }

# ---------------------------------------------------------------- prereqs

sub _have_module { my $m = shift; (my $f = "$m.pm") =~ s{::}{/}g; return grep { -f "$_/$f" } @INC }

sub _apache_missing {
    my (@mods) = @_;
    my @why;
    push @why, 'apache2 not installed (package apache2)' unless $APACHE;
    for my $m (@mods) {
        push @why, "$APACHE_MODS/$m->[0] missing (package $m->[1])"
            unless -f "$APACHE_MODS/$m->[0]";
    }
    return @why;
}

sub web_missing {
    my (@what) = @_;
    my @why;
    for my $w (@what) {
        if ($w eq 'rt') {
            push @why, HETest::RT->missing(db => 'Pg');
        } elsif ($w eq 'apache-fcgid') {
            push @why, _apache_missing(['mod_mpm_prefork.so', 'apache2-bin'],
                ['mod_fcgid.so', 'libapache2-mod-fcgid']);
            push @why, "$RT_ETC/apache2-fcgid.conf missing (package rt5-apache2)"
                unless -f "$RT_ETC/apache2-fcgid.conf";
            push @why, _fcgi_missing();
        } elsif ($w eq 'apache-modperl') {
            push @why, _apache_missing(['mod_mpm_prefork.so', 'apache2-bin'],
                ['mod_perl.so', 'libapache2-mod-perl2']);
            push @why, "$RT_ETC/apache2-modperl2.conf missing (package rt5-apache2)"
                unless -f "$RT_ETC/apache2-modperl2.conf";
            push @why, 'Plack::Handler::Apache2 not installed (package libplack-perl)'
                unless _have_module('Plack::Handler::Apache2');
        } elsif ($w eq 'nginx-fcgi') {
            push @why, 'nginx not installed (package nginx)' unless $NGINX;
            push @why, "$FASTCGI_PARAMS missing (package nginx-common)" unless -f $FASTCGI_PARAMS;
            push @why, 'spawn-fcgi not installed (package spawn-fcgi)' unless $SPAWN_FCGI;
            push @why, "Debian's nginx example for RT missing (package rt5-fcgi; or /usr/share/doc excluded by dpkg path-exclude)"
                unless $NGINX_EXAMPLE;
            push @why, _fcgi_missing();
        } elsif ($w eq 'haproxy') {
            push @why, 'haproxy not installed (package haproxy)' unless $HAPROXY;
        } elsif ($w eq 'check_http' || $w eq 'check_curl') {
            push @why, _plugin_missing($w);
        } elsif ($w eq 'blackbox') {
            push @why, 'blackbox exporter not installed (package prometheus-blackbox-exporter)'
                unless $BLACKBOX;
        } elsif ($w eq 'icinga2') {
            push @why, 'icinga2 not installed (package icinga2-bin)' unless $ICINGA2;
            push @why, "icinga2's ITL missing (package icinga2-common)"
                unless -f '/usr/share/icinga2/include/command-plugins.conf';
        } else {
            croak "web_missing: unknown '$w'";
        }
    }
    if ($> == 0 && !defined getpwnam($HETest::RT::RUN_AS)) {
        push @why, "running as root but user '$HETest::RT::RUN_AS' does not exist";
    }
    my %seen;
    return grep { !$seen{$_}++ } @why;
}

sub _fcgi_missing {
    my @why;
    push @why, "$RT_FCGI missing (package request-tracker5)" unless -f $RT_FCGI;
    push @why, 'FCGI not installed (package libfcgi-perl)' unless _have_module('FCGI');
    return @why;
}

# A monitoring plugin that is there but cannot run (check_curl without
# liburiparser1, a mere Recommends of monitoring-plugins-standard) is as
# missing as one that is not there.
sub _plugin_missing {
    my ($name) = @_;
    my $p = "$PLUGIN_DIR/$name";
    my $pkg = $name eq 'check_http' ? 'monitoring-plugins-basic' : 'monitoring-plugins-standard';
    return "$p not installed (package $pkg)" unless -x $p;
    # (-V exits 3, UNKNOWN, even when all is well: look at what it says)
    my $out = `'$p' -V 2>&1` // '';
    return () if $out =~ /^\Q$name\E v\d/;
    return "$p cannot run: " . join(' ', split /\n/, $out)
        . ($out =~ /liburiparser/ ? ' (install liburiparser1, only recommended by monitoring-plugins-standard)' : '');
}

sub require_or_skip {
    my (@why) = @_;
    return 1 unless @why;
    my $why = join '; ', @why;
    if (($ENV{CI} || '') eq 'true') {
        Test::More::plan(tests => 1);
        Test::More::fail("CI=true, so this must run: $why");
        exit 1;
    }
    Test::More::plan(skip_all => $why);
}

sub subtest_requires {
    my (@why) = @_;
    return 1 unless @why;
    my $why = join '; ', @why;
    if (($ENV{CI} || '') eq 'true') {
        Test::More::fail("CI=true, so this must run: $why");
        Test::More::done_testing();
        return 0;
    }
    Test::More::plan(skip_all => $why);
    return 0;    # not reached
}

# ---------------------------------------------------------------- files

sub slurp {
    my ($f) = @_;
    if ($f =~ /\.gz\z/) {
        require IO::Uncompress::Gunzip;
        my $t;
        IO::Uncompress::Gunzip::gunzip($f => \$t) or croak "gunzip $f failed";
        return $t;
    }
    open my $fh, '<', $f or croak "read $f: $!";
    local $/;
    return scalar <$fh>;
}

sub eg_file { return slurp(eg_dir() . "/$_[0]") }

sub eg_template {
    my ($name, @subst) = @_;
    return substitute(eg_file($name), "eg/$name", @subst);
}

sub substitute {
    my ($text, $what, @subst) = @_;
    while (my ($from, $to) = splice @subst, 0, 2) {
        my $n = () = $text =~ /\Q$from\E/g;
        croak "$what: '$from' not found (the file changed? adjust the test)" unless $n;
        $text =~ s/\Q$from\E/$to/g;
    }
    return $text;
}

# uid/gid the servers run as (undef when not root: they run as we do)
sub server_user_group {
    return () unless $> == 0;
    my ($uid, $gid) = (getpwnam $HETest::RT::RUN_AS)[2, 3];
    croak "no user $HETest::RT::RUN_AS" unless defined $uid;
    return ($uid, $gid);
}

sub _chown {
    my @ug = server_user_group() or return;
    chown $ug[0], $ug[1], @_;
}

sub write_file {
    my ($f, $text, $mode) = @_;
    open my $fh, '>', $f or croak "write $f: $!";
    print {$fh} $text;
    close $fh or croak "write $f: $!";
    chmod $mode // 0644, $f;
    _chown($f);
    return $f;
}

# directories the server writes into: owned by the server user
sub server_dirs {
    for my $d (@_) {
        make_path($d);
        chmod 0755, $d;
        _chown($d);
    }
}

# ---------------------------------------------------------------- watchdog

# Kills the process groups still registered when the test process goes
# away without stopping them (SIGKILL, a crash).
my ($WATCHDOG_FH, $WATCHDOG_PID);
my $OWNER_PID = $$;

sub _watchdog {
    return $WATCHDOG_FH if $WATCHDOG_FH;
    pipe(my $r, my $w) or croak "pipe: $!";
    my $pid = fork // croak "fork: $!";
    if ($pid == 0) {
        close $w;
        $SIG{$_} = 'IGNORE' for qw(INT HUP TERM);
        POSIX::setsid();
        my %live;
        while (my $l = <$r>) {
            if    ($l =~ /^\+(\d+)/) { $live{$1} = 1 }
            elsif ($l =~ /^-(\d+)/)  { delete $live{$1} }
        }
        if (%live) {
            kill 'TERM', map { (-$_, $_) } keys %live;
            my $until = time + 5;
            sleep 0.1 while time < $until && grep { kill 0, $_ } keys %live;
            kill 'KILL', map { (-$_, $_) } keys %live;
        }
        POSIX::_exit(0);
    }
    close $r;
    $w->autoflush(1);
    ($WATCHDOG_FH, $WATCHDOG_PID) = ($w, $pid);
    return $w;
}

sub watch   { my $w = _watchdog(); print {$w} "+$_\n" for @_ }
sub unwatch { return unless $WATCHDOG_FH; print {$WATCHDOG_FH} "-$_\n" for @_ }

# ---------------------------------------------------------------- servers

my @LIVE;    # servers to stop at END

sub start_server {
    my ($rt, %a) = @_;
    my $self = bless {
        name => $a{name}, port => $a{port}, rt => $rt,
        logs => $a{logs} || [], base => $a{base}, dir => $a{dir},
        stop_signal => $a{stop_signal} || 'TERM',
        extra_pids => [],
    }, 'HETest::Web::Server';
    my $out = $a{output} || ($a{dir} || $rt->dir . '/run') . "/$a{name}.out";
    unshift @{ $self->{logs} }, $out;
    $self->{pid} = $rt->spawn(
        cmd => $a{cmd}, output => $out, chdir => $a{dir} || $rt->dir,
        env => { PERL5LIB => '', %{ $a{env} || {} } },
    );
    watch($self->{pid});
    push @LIVE, $self;
    my $deadline = time + ($a{timeout} || $START_TIMEOUT);
    my $ok = 0;
    while (time < $deadline) {
        last unless $self->running;
        if (!$a{port} || HETest::RT::port_open($a{port})) {
            if (!$a{ready} || eval { $a{ready}->($self) }) { $ok = 1; last }
        }
        sleep 0.25;
    }
    unless ($ok) {
        my $diag = $self->log_tail(30);
        $self->stop;
        croak "$a{name} did not come up within " . ($a{timeout} || $START_TIMEOUT)
            . " s (or exited)\n$diag\n--- RT log ---\n" . HETest::RT::tail($rt->rt_log, 20);
    }
    return $self;
}

sub _ping_ready {
    my ($base) = @_;
    return sub {
        my $r = http_get("$base/healthz/ping");
        return $r->{status} == 200 && $r->{content} eq 'pong';
    };
}

# ---------------------------------------------------------------- the RT

sub rt_for_web {
    my (%opt) = @_;
    my $rt = HETest::RT->new(
        db => 'Pg', webpath => '/rt', port => HETest::RT::free_port(),
        %opt,
        config => { %HE_CONFIG, %{ $opt{config} || {} } },
    );
    $rt->start_db;
    $rt->init_db;
    $rt->write_config;
    return $rt;
}

# RT's environment for a server: site config, the plugin's lib dirs
sub _rt_env { my $rt = shift; my $e = $rt->rt_env; return @$e{qw(RT_SITE_CONFIG RT_SITE_CONFIG_DIR PERL5LIB)} }

# ---------------------------------------------------------------- Apache

sub _apache_base_conf {
    my ($dir, $port, @modules) = @_;
    my $conf = <<"EOF";
# generated by HETest::Web: a private Apache httpd, nothing from /etc/apache2
ServerRoot $dir
ServerName 127.0.0.1
Listen 127.0.0.1:$port
PidFile $dir/run/httpd.pid
DefaultRuntimeDir $dir/run
Mutex file:$dir/run default
ErrorLog $dir/logs/error.log
LogLevel warn
EOF
    $conf .= "LoadModule ${_}_module $APACHE_MODS/mod_$_.so\n" for @modules;
    $conf .= <<"EOF";
TypesConfig /etc/mime.types
StartServers 2
MinSpareServers 1
MaxSpareServers 4
MaxRequestWorkers 16
EOF
    return $conf;
}

sub _start_apache {
    my ($rt, $name, $dir, $conf, %a) = @_;
    server_dirs($dir, "$dir/run", "$dir/logs", @{ $a{dirs} || [] });
    write_file("$dir/httpd.conf", $conf);
    my $base = "http://127.0.0.1:" . $rt->port . $rt->webpath;
    my $web = start_server($rt,
        name => $name, port => $rt->port, dir => $dir, base => $base,
        cmd => [ $APACHE, '-f', "$dir/httpd.conf", '-DFOREGROUND' ],
        env => $a{env} || {},
        logs => [ "$dir/logs/error.log" ],
        ready => _ping_ready($base),
    );
    $web->{conf} = "$dir/httpd.conf";
    return $web;
}

# Debian's /etc/request-tracker5/apache2-fcgid.conf, included as it is; its
# FcgidInitialEnv RT_SITE_CONFIG is overridden by a later one (mod_fcgid
# keeps the last value of a variable).
sub start_apache_fcgid {
    my ($rt) = @_;
    my $dir = $rt->dir . '/apache-fcgid';
    my ($site, $site_dir, $inc) = _rt_env($rt);
    my $conf = _apache_base_conf($dir, $rt->port,
        qw(mpm_prefork authz_core authz_host alias dir mime fcgid));
    $conf .= <<"EOF";
# what Debian's mods-available/fcgid.conf says
FcgidConnectTimeout 20
AddHandler fcgid-script .fcgi
FcgidIPCDir $dir/fcgid
FcgidProcessTableFile $dir/run/fcgid_shm

Include $RT_ETC/apache2-fcgid.conf
FcgidInitialEnv RT_SITE_CONFIG $site
FcgidInitialEnv RT_SITE_CONFIG_DIR $site_dir
FcgidInitialEnv PERL5LIB $inc
EOF
    return _start_apache($rt, 'apache2-fcgid', $dir, $conf, dirs => ["$dir/fcgid"]);
}

# Debian's apache2-modperl2.conf, with its PerlSetEnv RT_SITE_CONFIG line
# pointing at the private site config.  It cannot be included as it is and
# overridden later: its <Perl> block loads RT (and builds the PSGI app,
# calling PSGIWrap) while Apache reads the config, with the value in %ENV
# at that moment.
sub start_apache_modperl {
    my ($rt) = @_;
    my $dir = $rt->dir . '/apache-modperl';
    my ($site, $site_dir, $inc) = _rt_env($rt);
    server_dirs($dir);
    my $debian = "$RT_ETC/apache2-modperl2.conf";
    my $rtconf = substitute(slurp($debian), $debian,
        "PerlSetEnv RT_SITE_CONFIG $RT_ETC/RT_SiteConfig.pm"
            => "PerlSetEnv RT_SITE_CONFIG $site");
    write_file("$dir/rt-modperl2.conf", "# $debian, RT_SITE_CONFIG changed by HETest::Web\n$rtconf");
    write_file("$dir/HETestDiag.pm", _modperl_diag_module());
    my @inc = grep { length } split /:/, $inc;
    my $conf = _apache_base_conf($dir, $rt->port,
        qw(mpm_prefork authz_core authz_host alias mime perl));
    $conf .= "PerlSwitches " . join(' ', map { "-I$_" } @inc, $dir) . "\n";
    $conf .= <<"EOF";
PerlSetEnv RT_SITE_CONFIG_DIR $site_dir
Include $dir/rt-modperl2.conf

# diagnostics for the test: \$^X, fork, %ENV inside a worker
PerlModule HETestDiag
<Location /he-diag>
  SetHandler modperl
  PerlResponseHandler HETestDiag
</Location>
EOF
    return _start_apache($rt, 'apache2-modperl', $dir, $conf);
}

sub _modperl_diag_module {
    return <<'EOF';
package HETestDiag;
# Written by HETest::Web for t/87-apache-modperl.t: what a mod_perl worker
# looks like to code that wants to fork a helper process.
use strict;
use warnings;
use Apache2::RequestRec ();
use Apache2::RequestIO ();
use Apache2::Const -compile => qw(OK);
use Config ();
use POSIX ();

sub handler {
    my $r = shift;
    my %d = (
        perl_x => $^X, program => $0, pid => $$, ppid => getppid(),
        uid => $<, euid => $>,
        env_RT_SITE_CONFIG => $ENV{RT_SITE_CONFIG} // '(unset)',
        env_MOD_PERL => $ENV{MOD_PERL} // '(unset)',
        sig_CHLD => $SIG{CHLD} // '(unset)', sig_PIPE => $SIG{PIPE} // '(unset)',
        useithreads => $Config::Config{useithreads} ? 1 : 0,
        mpm => eval { require Apache2::MPM; Apache2::MPM->show } // '?',
        rt_loaded => defined $INC{'RT.pm'} ? 1 : 0,
        plugin_loaded => defined $INC{'RT/Extension/HealthEndpoint.pm'} ? 1 : 0,
    );
    # what a child process started with system/exec sees of %ENV
    my $seen = `/bin/sh -c 'echo "x\$RT_SITE_CONFIG"'`;
    chomp $seen;
    $d{child_env_RT_SITE_CONFIG} = length($seen) > 1 ? substr($seen, 1) : '(unset)';
    # a plain fork: does the child run, can it report back, exit cleanly?
    pipe(my $rd, my $wr) or die "pipe: $!";
    my $pid = fork;
    if (!defined $pid) {
        $d{fork} = "failed: $!";
    } elsif ($pid == 0) {
        close $rd;
        print {$wr} "child $$ of " . getppid();
        close $wr;
        POSIX::_exit(0);
    } else {
        close $wr;
        local $/;
        my $msg = <$rd>;
        waitpid $pid, 0;
        $d{fork} = ($msg // '(nothing)') . ", exit status $?";
    }
    $r->content_type('text/plain');
    $r->print(join '', map { "$_=$d{$_}\n" } sort keys %d);
    return Apache2::Const::OK;
}

1;
EOF
}

# ---------------------------------------------------------------- nginx + spawn-fcgi

# Debian's rt5-fcgi: spawn-fcgi as in rt5-fcgi.service (-F workers, -d /,
# -s socket, -P pidfile), and its nginx example in a server block, the
# socket path changed.  A second server block (fixed_port) adds
# eg/nginx-healthz.conf.
sub start_nginx_fcgi {
    my ($rt, %opt) = @_;
    my $workers = $opt{workers} || 2;
    my $dir = $rt->dir . '/nginx';
    my $fdir = $rt->dir . '/rt5-fcgi';
    server_dirs($dir, "$dir/logs", "$dir/tmp", $fdir);
    my ($site, $site_dir, $inc) = _rt_env($rt);
    my $sock = "$fdir/rt5-fcgi.sock";

    # spawn-fcgi forks the workers and exits; each worker is its own
    # session, so they are stopped by the pids in the pid file.
    my ($st, $out) = $rt->run_cmd(
        cmd => [ $SPAWN_FCGI, '-F', $workers, '-d', '/', '-s', $sock,
                 '-P', "$fdir/rt5-fcgi.pid", '--', $RT_FCGI ],
        env => { RT_SITE_CONFIG => $site, RT_SITE_CONFIG_DIR => $site_dir, PERL5LIB => $inc },
        timeout => 60,
    );
    croak "spawn-fcgi failed ($st):\n$out" if $st;
    my @pids = grep { /^\d+$/ } split /\s+/, slurp("$fdir/rt5-fcgi.pid");
    croak "spawn-fcgi: no worker pids in its pid file:\n$out" unless @pids;
    watch(@pids);
    my $fcgi = bless { name => 'rt5-fcgi', pid => undef, extra_pids => \@pids,
        rt => $rt, logs => [], dir => $fdir, stop_signal => 'TERM' }, 'HETest::Web::Server';
    push @LIVE, $fcgi;

    my $example = substitute(slurp($NGINX_EXAMPLE), $NGINX_EXAMPLE,
        'unix:/var/run/rt5-fcgi.sock' => "unix:$sock");
    write_file("$dir/request-tracker5.conf", $example);
    write_file("$dir/nginx-healthz.conf",
        eg_template('nginx-healthz.conf', 'unix:/var/run/rt5-fcgi.sock' => "unix:$sock"));
    my $port = $rt->port;
    my $fixed_port = HETest::RT::free_port();
    write_file("$dir/nginx.conf", <<"EOF");
# generated by HETest::Web: a private nginx, nothing from /etc/nginx but
# fastcgi_params (included by Debian's example)
daemon off;
master_process on;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;

    # Debian's example as it is
    server {
        listen 127.0.0.1:$port;
        server_name 127.0.0.1;
        include $dir/request-tracker5.conf;
    }

    # the same plus eg/nginx-healthz.conf
    server {
        listen 127.0.0.1:$fixed_port;
        server_name 127.0.0.1;
        include $dir/request-tracker5.conf;
        include $dir/nginx-healthz.conf;
    }
}
EOF
    my $base = "http://127.0.0.1:$port" . $rt->webpath;
    my $web = start_server($rt,
        name => 'nginx', port => $port, dir => $dir, base => $base,
        cmd => [ $NGINX, '-e', "$dir/logs/error.log", '-p', "$dir/", '-c', "$dir/nginx.conf" ],
        logs => [ "$dir/logs/error.log" ],
        ready => _ping_ready($base),
    );
    $web->{conf} = "$dir/nginx.conf";
    $web->{fcgi} = $fcgi;
    $web->{fixed_port} = $fixed_port;
    $web->{fixed_base} = "http://127.0.0.1:$fixed_port" . $rt->webpath;
    return $web;
}

# ---------------------------------------------------------------- HTTP

my $HTTP = HTTP::Tiny->new(timeout => 20, max_redirect => 0, keep_alive => 0, agent => 'hetest-web/1');

sub http_get { return $HTTP->get($_[0]) }

sub http_request {
    my ($method, $url, %opt) = @_;
    return $HTTP->request($method, $url, \%opt);
}

sub _split_url {
    my ($url) = @_;
    $url =~ m{^http://([^/:]+):(\d+)(/.*)?\z} or croak "bad url $url";
    return ($1, $2, $3 // '/');
}

# Every byte of the answer to one request on its own connection.
sub http_raw {
    my ($method, $url) = @_;
    my ($host, $port, $path) = _split_url($url);
    my $s = IO::Socket::INET->new(PeerAddr => $host, PeerPort => $port, Proto => 'tcp', Timeout => 10)
        or return "connect failed: $!";
    print {$s} "$method $path HTTP/1.1\r\nHost: $host:$port\r\nConnection: close\r\n\r\n";
    my $buf = '';
    my $deadline = time + 20;
    while (time < $deadline) {
        my $n = sysread($s, my $chunk, 65536);
        last unless $n;
        $buf .= $chunk;
    }
    return $buf;
}

sub http_head_raw { return http_raw('HEAD', $_[0]) }

# Poll $code (true = done) every $step seconds for at most $seconds;
# returns the last value.
sub poll {
    my ($seconds, $code, $step) = @_;
    my $deadline = time + $seconds;
    my $v;
    while (1) {
        $v = $code->();
        return $v if $v || time >= $deadline;
        sleep($step || 0.2);
    }
}

# After the database changed state at time $since: poll $url until it
# answers $code, for at most CacheSeconds + 2 x Timeout from $since.  Then
# wait, if need be, until CacheSeconds + Timeout after $since, when no
# worker can still hold a result from before the change (each worker has
# its own cache), so that every later probe must answer $code too.
sub wait_for_status {
    my ($url, $code, $since) = @_;
    my ($cache, $timeout) = @HE_CONFIG{qw(HealthEndpoint_CacheSeconds HealthEndpoint_Timeout)};
    $since //= time;
    my $got = poll($since + $cache + 2 * $timeout - time, sub { http_get($url)->{status} == $code });
    my $left = $since + $cache + $timeout - time;
    sleep $left if $left > 0;
    return $got;
}

# Run a command to completion as the server user; returns (exit code, output).
sub run_as_server {
    my ($rt, @cmd) = @_;
    my %a = ref $cmd[-1] eq 'HASH' ? %{ pop @cmd } : ();
    my ($st, $out) = $rt->run_cmd(cmd => \@cmd, env => { PERL5LIB => '', %{ $a{env} || {} } },
        timeout => $a{timeout} || 60);
    return ($st == -1 ? -1 : $st >> 8, $out // '');
}

# ---------------------------------------------------------------- checks

sub _hval {
    my ($r, $h) = @_;
    my $v = $r->{headers}{$h};
    return ref $v ? join(', ', @$v) : $v;
}

sub status_body { HETest::RT::status_body(@_) }

# The headers every answer of the endpoints must have (HTTP::Tiny result).
sub check_headers {
    my ($r, $name, %o) = @_;
    my $cc = $o{cache_control} // 'no-store';
    Test::More::is(_hval($r, 'cache-control'), $cc, "$name: Cache-Control: $cc");
    if (defined $o{expires}) {
        Test::More::is(_hval($r, 'expires'), $o{expires}, "$name: Expires: $o{expires} (added by the front end)");
    } else {
        Test::More::ok(!exists $r->{headers}{expires}, "$name: no Expires header");
    }
    Test::More::is(_hval($r, 'content-length'), $o{length} // length($r->{content} // ''),
        "$name: Content-Length");
    Test::More::ok(!exists $r->{headers}{'set-cookie'}, "$name: no Set-Cookie")
        or Test::More::diag('Set-Cookie: ' . _hval($r, 'set-cookie'));
}

sub check_head_raw {
    my ($url, $code, $type, $len, $name, %o) = @_;
    my $raw = http_head_raw($url);
    my ($head) = split /\r\n\r\n/, $raw, 2;
    Test::More::like($raw, qr{\AHTTP/1\.[01] $code }, "$name: HEAD => $code")
        or Test::More::diag($raw);
    Test::More::like($raw, qr{\r\n\r\n\z}, "$name: HEAD: nothing after the headers");
    Test::More::like($head // '', qr{^Content-Type: \Q$type\E\b}mi, "$name: HEAD: $type");
    Test::More::like($head // '', qr{^Content-Length: $len\r?$}mi, "$name: HEAD: Content-Length $len");
    my $cc = $o{cache_control} // 'no-store';
    Test::More::like($head // '', qr{^Cache-Control: \Q$cc\E\r?$}mi, "$name: HEAD: Cache-Control: $cc");
    Test::More::unlike($head // '', qr{^Set-Cookie:}mi, "$name: HEAD: no Set-Cookie");
}

sub check_ping {
    my ($web, $name, %o) = @_;
    my $url = $web->url('/healthz/ping');
    $name //= 'ping';
    my %h = (cache_control => $o{cache_control_200}, expires => $o{expires_200});
    my $r = http_get($url);
    Test::More::is($r->{status}, 200, "$name: GET => 200") or Test::More::diag($r->{content});
    Test::More::is($r->{content}, 'pong', "$name: body pong");
    Test::More::like(_hval($r, 'content-type') // '', qr{^text/plain\b}, "$name: text/plain");
    check_headers($r, "$name GET", %h);
    check_head_raw($url, 200, 'text/plain', 4, $name, %h);
}

sub check_status {
    my ($web, $checks, $name, %o) = @_;
    my $url = $web->url('/healthz/status');
    my $want = status_body($checks);
    my $code = $want =~ /"status":"fail"/ ? 503 : 200;
    $name //= "status $code";
    my %h = $code == 200 ? (cache_control => $o{cache_control_200}, expires => $o{expires_200}) : ();
    my $r = http_get($url);
    Test::More::is($r->{status}, $code, "$name: GET => $code");
    Test::More::is($r->{content}, $want, "$name: body $want");
    Test::More::like(_hval($r, 'content-type') // '', qr{^application/json\b}, "$name: application/json");
    check_headers($r, "$name GET", %h);
    check_head_raw($url, $code, 'application/json', length $want, $name, %h);
    return $r;
}

sub check_405 {
    my ($web, $path) = @_;
    my $url = $web->url($path);
    for my $m (qw(POST PUT DELETE)) {
        my $r = http_request($m, $url, $m eq 'DELETE' ? () : (content => 'x=1',
            headers => { 'content-type' => 'application/x-www-form-urlencoded' }));
        Test::More::is($r->{status}, 405, "$m $path => 405");
        Test::More::is(_hval($r, 'allow'), 'GET, HEAD', "$m $path: Allow: GET, HEAD");
        Test::More::is($r->{content}, 'method not allowed', "$m $path: body");
        check_headers($r, "$m $path");
    }
}

our @NEAR_MISS = ('/healthz', '/healthz/', '/healthz/ping/', '/healthz/anything');

sub deployment_checks {
    my ($rt, $web, %o) = @_;
    my %ok = (database => 'ok', redis => 'skipped');
    my %fail = (database => 'fail', redis => 'skipped');
    my %h = (cache_control_200 => $o{cache_control_200} // 'no-store',
             expires_200 => $o{expires_200});
    my $timeout = $HE_CONFIG{HealthEndpoint_Timeout};
    my $settle = $HE_CONFIG{HealthEndpoint_CacheSeconds} + 2 * $timeout;
    my $status_url = $web->url('/healthz/status');

    Test::More::subtest('ping: GET and HEAD' => sub { check_ping($web, 'ping', %h) });
    Test::More::subtest('status ok: GET and HEAD' => sub { check_status($web, \%ok, 'status ok', %h) });
    Test::More::subtest('other methods: 405' => sub {
        check_405($web, '/healthz/ping');
        check_405($web, '/healthz/status');
    });

    Test::More::subtest('200 probes create no session; /NoAuth/Login.html does' => sub {
        my $before = $rt->session_count;
        my ($n, @bad) = (0);
        for my $i (1 .. 100) {
            for my $p ('/healthz/ping', '/healthz/status') {
                my $r = http_get($web->url($p));
                $n++;
                push @bad, "$p: $r->{status}" . (exists $r->{headers}{'set-cookie'} ? ' with Set-Cookie' : '')
                    if $r->{status} != 200 || exists $r->{headers}{'set-cookie'};
            }
        }
        Test::More::is(scalar(@bad), 0, "$n probes: all 200 without Set-Cookie")
            or Test::More::diag(join "\n", @bad[0 .. ($#bad < 9 ? $#bad : 9)]);
        Test::More::is($rt->session_count, $before, "session count unchanged ($before)");
        for (1 .. 5) {
            my $r = http_get($web->url('/NoAuth/Login.html'));
            Test::More::is($r->{status}, 200, 'GET /NoAuth/Login.html => 200');
            Test::More::ok(exists $r->{headers}{'set-cookie'}, '... with a session cookie');
        }
        Test::More::is($rt->session_count, $before + 5, 'control: 5 login pages added 5 sessions');
    });

    Test::More::subtest('near-miss paths get a fixed 404 from the module' => sub {
        my %body;
        TODO: {
            local $TODO = 'namespace 404 (issue 11)';
            for my $p (@NEAR_MISS) {
                my $r = http_get($web->url($p));
                Test::More::is($r->{status}, 404, "$p => 404");
                Test::More::like(_hval($r, 'content-type') // '', qr{^text/plain\b}, "$p: text/plain");
                Test::More::is(_hval($r, 'cache-control'), 'no-store', "$p: Cache-Control: no-store");
                Test::More::ok(!exists $r->{headers}{'set-cookie'}, "$p: no Set-Cookie");
                Test::More::is(_hval($r, 'content-length'), length($r->{content} // ''), "$p: Content-Length");
                $body{$r->{content} // ''}++;
            }
            Test::More::is(scalar(keys %body), 1, 'the same body for every near miss');
        }
    });

    Test::More::subtest('WebPath /rt' => sub {
        Test::More::like($web->url('/healthz/ping'), qr{:\d+/rt/healthz/ping\z}, 'the probes go to /rt/healthz/...');
        my $r = http_get($web->url('/'));
        Test::More::is($r->{status}, 200, 'RT login page at /rt/');
        Test::More::like($r->{content} // '', qr{action="/rt/NoAuth/Login\.html"}, 'its form posts under /rt');
        (my $outside = $web->url('/healthz/ping')) =~ s{/rt/healthz/}{/healthz/};
        $r = http_get($outside);
        Test::More::isnt($r->{content}, 'pong', '/healthz/ping outside /rt is not answered');
        Test::More::is($r->{status}, 404, '... the front end says 404');
    });

    Test::More::subtest('database down => 503, ping still 200, back => 200' => sub {
        my $mark = $rt->rt_log_mark;
        $rt->stop_pg;
        my $got = wait_for_status($status_url, 503, time);
        Test::More::ok($got, "503 within CacheSeconds + 2 x Timeout ($settle s)");
        check_status($web, \%fail, 'status fail', %h);
        check_ping($web, 'ping with the database down', %h);
        my $log = poll(5, sub {
            my $l = $rt->rt_log_since($mark);
            $l =~ /database check failed/ ? $l : undef;
        }) // $rt->rt_log_since($mark);
        Test::More::like($log, qr/\[error\]: [^\n]*database check failed/, 'RT log: database check failed');
        my ($inc) = grep { length } split /:/, $rt->rt_env->{PERL5LIB};
        Test::More::like($log, qr{\(\Q$inc\E/RT/Extension/HealthEndpoint\.pm:},
            "the plugin runs from $inc");

        $rt->start_pg;
        $got = wait_for_status($status_url, 200, time);
        Test::More::ok($got, "200 again within $settle s");
        my @bad = grep { $_ != 200 } map { http_get($status_url)->{status} } 1 .. 10;
        Test::More::is(scalar(@bad), 0, '10 more status probes: all 200') or Test::More::diag("@bad");
        check_status($web, \%ok, 'status ok again', %h);
        my $r = http_get($web->url('/NoAuth/Login.html'));
        Test::More::is($r->{status}, 200, 'RT itself serves pages again');
    });
}

# ---------------------------------------------------------------- teardown

END {
    if ($$ == $OWNER_PID) {
        local ($?, $!, $@);
        $_->stop for reverse @LIVE;
        if ($WATCHDOG_FH) {
            close $WATCHDOG_FH;
            waitpid $WATCHDOG_PID, 0;
        }
    }
}

package HETest::Web::Server;

use Time::HiRes qw(sleep time);

sub name { $_[0]{name} }
sub port { $_[0]{port} }
sub pid  { $_[0]{pid} }
sub dir  { $_[0]{dir} }
sub base { $_[0]{base} }
sub logs { @{ $_[0]{logs} } }
sub url  { my ($s, $p) = @_; return $s->{base} . ($p // '') }

sub _alive {
    my ($pid) = @_;
    return 0 unless kill 0, $pid;
    # an orphan that has exited but is not reaped yet is gone too
    if (open my $fh, '<', "/proc/$pid/stat") {
        my $st = <$fh> // '';
        return 0 if $st =~ /^\d+ \(.*\) Z/s;
    }
    return 1;
}

sub running {
    my ($s) = @_;
    if ($s->{pid}) {
        my $r = waitpid($s->{pid}, POSIX::WNOHANG());
        return 0 if $r == $s->{pid} || $r == -1;
        return 1;
    }
    return scalar grep { _alive($_) } @{ $s->{extra_pids} };
}

sub stop {
    my ($s) = @_;
    $s->{fcgi}->stop if $s->{fcgi};
    if (my $pid = delete $s->{pid}) {
        $s->{rt}->stop_pid($pid, signal => $s->{stop_signal}, wait => 20);
        HETest::Web::unwatch($pid);
    }
    if (my @pids = @{ $s->{extra_pids} }) {
        kill $s->{stop_signal}, @pids;
        my $deadline = time + 20;
        sleep 0.1 while time < $deadline && grep { _alive($_) } @pids;
        kill 'KILL', map { (-$_, $_) } grep { _alive($_) } @pids;
        HETest::Web::unwatch(@pids);
        $s->{extra_pids} = [];
    }
    if ($s->{port}) {
        my $deadline = time + 10;
        sleep 0.1 while HETest::RT::port_open($s->{port}) && time < $deadline;
    }
    return $s;
}

sub log_tail {
    my ($s, $n) = @_;
    my $t = '';
    for my $f (@{ $s->{logs} }, $s->{fcgi} ? $s->{fcgi}->logs : ()) {
        next unless -e $f;
        $t .= "--- $f ---\n" . HETest::RT::tail(HETest::RT::slurp($f), $n || 20);
    }
    return $t;
}

1;
