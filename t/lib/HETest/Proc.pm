package HETest::Proc;

=head1 NAME

HETest::Proc - ports, users, processes and clean-up for the throw-away
servers of the tests, the benchmarks and the demo

=head1 SYNOPSIS

    use lib 't/lib';
    use HETest::Proc qw(free_port spawn run_cmd server_dir);

    my $port = free_port();
    my $dir  = server_dir('thing');          # owned by the server user
    run_cmd(cmd => ['/usr/bin/true'], log => "$dir/true.log");

    # a server object: started, checked for readiness, stopped at exit
    package My::Thing;
    our @ISA = ('HETest::Proc::Server');
    sub _ready { HETest::Proc::port_open($_[0]->port) }
    package main;
    my $thing = My::Thing->_new(name => 'thing', dir => $dir, port => $port,
        host => '127.0.0.1', log => "$dir/thing.log",
        cmd => ['/usr/sbin/thingd', '--port', $port]);
    $thing->start;

HETest::Servers (PostgreSQL, MariaDB, Redis, Sentinel, fake peers,
Starman) and HETest::RT (a whole Request Tracker) are built on this module;
bench/ and eg/demo use them.

=head1 CLEAN-UP

Every process started here runs in a session of its own (so that its whole
process group can be signalled) and is stopped, and every temporary
directory registered here is removed, in an END block: also when the
program dies or is interrupted (SIGINT, SIGTERM and SIGHUP are turned into
an exit so that END runs, unless the program installed handlers of its
own).  A small watchdog process, forked on first use, stops the process
groups and removes the directories even when the program itself is killed
with SIGKILL.  Set HETEST_KEEP=1 to keep the temporary directories (logs,
data) for a post-mortem; their paths are printed at exit.

=head1 ENVIRONMENT

=over

=item HETEST_PORT_BASE=N

free_port() hands out ports from N upwards instead of letting the kernel
pick one: each port is tested by binding 127.0.0.1 to it (ports in use are
skipped), never handed out twice by one process, and claimed with a lock
file (in F<hetest-ports> under the system temp dir, held until the process
exits) so that test files run in parallel do not pick the same port.  Use
it to keep the tests, the benchmarks and the demo inside a port range where
no other service listens.  Unset (the default): a port the kernel picks.

=item HETEST_RUN_AS=user

The user the servers run as when we run as root (default C<nobody>).
Servers never run as root (PostgreSQL refuses to anyway); when we are not
root they run as ourselves.

=item HETEST_TMPDIR=dir

Where the servers' directories are made (default: the system temp dir).  It
must be traversable by the server user, and short: unix socket paths are
limited to 107 bytes.

=item HETEST_KEEP=1

Keep the temporary directories.

=item HETEST_READY_TIMEOUT=seconds

How long start-up waits for a server to be ready (default 20).

=back

=head1 FUNCTIONS

=over

=item free_port(), closed_port()

A TCP port on 127.0.0.1 where nothing listens (so connecting to it is
refused); see HETEST_PORT_BASE.  closed_port is an alias that reads better
in tests.

=item port_open($port, [$host])

True when something accepts TCP connections on $host (127.0.0.1):$port.

=item server_user()

(name, uid, gid) of the user the servers run as.

=item server_dir($tag), scratch_dir($tag)

A temporary directory removed at exit.  server_dir's is under HETEST_TMPDIR,
mode 0700, owned by the server user, checked to be writable by it;
scratch_dir's is a plain one of ours under the system temp dir.

=item remove_dir($dir)

Removes a directory now (unless HETEST_KEEP), instead of at exit.

=item write_file($path, $content, [$mode]), own(@paths)

Write a file (mode 0600 unless given; returns the path); hand files to the
server user when we are root (returns the paths).

=item slurp($file), log_tail($file, [$lines])

A file's content (undef if unreadable); its last lines (30) under a header
naming it.

=item find_binary($name)

An executable in PATH or the sbin directories (a name with a slash is
tested as is), or undef.

=item spawn(%a)

Forks and execs C<cmd> (array ref) in a new session, stdin from /dev/null,
stdout and stderr appended to C<log> (default /dev/null), in C<dir> (which
also becomes HOME), with C<env> (a hash; undef deletes a variable), as the
server user unless C<< as_user => 0 >>.  The watchdog stops its process
group with C<stop_signal> (TERM) if we die.  Returns the pid; croaks if the
exec failed.

=item run_cmd(%a)

spawn, then wait for the exit, at most C<timeout> seconds (120); croaks with
the tail (C<tail> lines, 30) of the log unless the exit status is 0.  With
C<< status => 1 >> it returns the wait status (C<$?>; -1 after a timeout)
instead of croaking, for a caller that wants the exit code.

=item fork_server(stop_signal => $sig)

fork() for a server written in Perl: returns 0 in the child, which runs in
a session of its own with the default signal handlers, and the pid in the
parent, where the child is handed to the watchdog (stopped with $sig, TERM).
The child should end with POSIX::_exit.

=item watch($pid, [$signal]), unwatch($pid)

Hand a process group to the watchdog (stopped with $signal, TERM, if we
die), or take it back.  spawn and the server objects do this themselves.

=back

=head1 SERVER OBJECTS

C<HETest::Proc::Server> is the base class of every server object: C<_new(%fields)>
registers it for the stop at exit; C<start> spawns C<cmd> (with C<log>, C<dir>,
C<env>, C<as_user>) unless it runs, and polls the subclass's C<_ready> (true
when ready; may die, which is remembered) every 0.1 s for C<ready_timeout>
seconds (HETEST_READY_TIMEOUT); on an early exit or a timeout it croaks with
the tail of C<log> and C<extra_logs>.  C<stop> is idempotent: it sends SIGCONT
to the process group (a frozen server can shut down), C<stop_signal> (TERM)
to the process, waits (20 s, then SIGKILL), kills what is left of the group,
and waits until the port is closed.  Also C<running>, C<sigstop>, C<sigcont>
(with C<< group => 1 >>: the whole process group), C<log_tail($lines)>,
C<addr> ('host:port') and the accessors name, dir, pid, host, port, log,
sock, user, password.

=cut

use strict;
use warnings;

use Carp qw(croak);
use Exporter qw(import);
use Fcntl qw(O_CREAT O_RDONLY LOCK_EX LOCK_NB);
use File::Path qw(rmtree);
use File::Spec;
use File::Temp qw(tempdir);
use IO::Handle;
use IO::Select;
use IO::Socket::INET;
use POSIX qw(WNOHANG);
use Time::HiRes qw(sleep);

our @EXPORT_OK = qw(
    free_port closed_port port_open http_raw server_user server_dir scratch_dir
    remove_dir write_file own slurp log_tail find_binary nginx_temp_paths
    spawn run_cmd fork_server watch unwatch
);
our %EXPORT_TAGS = (all => \@EXPORT_OK);

our $READY_TIMEOUT = $ENV{HETEST_READY_TIMEOUT} || 20;
our $STOP_TIMEOUT  = 20;

my $OWNER_PID = $$;
my @SERVERS;            # every server object, stopped in END (newest first)
my @TEMPDIRS;           # removed in END
my ($WATCHDOG_PID, $WATCHDOG_FH);

sub _say {
    my ($msg) = @_;
    if ($INC{'Test/More.pm'}) { Test::More::diag($msg) }
    else                      { print STDERR "# $msg\n" }
}

# Turn the usual termination signals into an exit so that END runs.  Only
# when the program has not installed handlers of its own.
my %SIGNUM = (HUP => 1, INT => 2, TERM => 15);
for my $sig (sort keys %SIGNUM) {
    next if defined $SIG{$sig} && $SIG{$sig} ne '' && $SIG{$sig} ne 'DEFAULT';
    $SIG{$sig} = sub {
        _say("caught SIG$sig: stopping the test servers");
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
            _say("HETEST_KEEP: kept $_") for grep { -d } @TEMPDIRS;
        }
        else {
            rmtree($_, 0, 1) for @TEMPDIRS;
        }
    }
}

# ---------------------------------------------------------------------------
# files and binaries

sub find_binary {
    my ($name) = @_;
    return (-f $name && -x _) ? $name : undef if $name =~ m{/};
    for my $d (File::Spec->path, qw(/usr/local/sbin /usr/sbin /sbin)) {
        my $p = "$d/$name";
        return $p if -f $p && -x _;
    }
    return undef;
}

sub slurp {
    my ($file) = @_;
    open my $fh, '<', $file or return undef;
    local $/;
    return scalar <$fh>;
}

sub log_tail {
    my ($file, $n) = @_;
    $n ||= 30;
    open my $fh, '<', $file or return "($file: $!)\n";
    my @l = <$fh>;
    splice @l, 0, @l - $n if @l > $n;
    return join '', "--- last lines of $file ---\n", @l;
}

sub write_file {
    my ($path, $content, $mode) = @_;
    open my $fh, '>', $path or croak "write $path: $!";
    print {$fh} $content;
    close $fh or croak "write $path: $!";
    chmod $mode // 0600, $path;
    return $path;
}

# ---------------------------------------------------------------------------
# users and directories

sub server_user {
    if ($> == 0) {
        my $name = $ENV{HETEST_RUN_AS} || 'nobody';
        my @pw = getpwnam($name)
            or croak "running as root but there is no user '$name'";
        return (name => $name, uid => $pw[2], gid => $pw[3]);
    }
    my $name = getpwuid($>) // $>;
    return (name => $name, uid => $>, gid => (split ' ', $))[0]);
}

# The lines of an http { } block that keep a private nginx's temporary
# files in $dir: run as nobody, nginx cannot create the compiled-in ones
# under /var/lib/nginx (root's, empty after the package is installed).
sub nginx_temp_paths {
    my ($dir) = @_;
    return join '', map { "    ${_}_temp_path $dir;\n" }
                    qw(client_body proxy fastcgi uwsgi scgi);
}

sub own {
    my (@paths) = @_;
    if ($> == 0) {
        my %u = server_user();
        chown $u{uid}, $u{gid}, @paths or croak "chown @paths: $!";
    }
    return wantarray ? @paths : $paths[0];
}

sub _drop_privileges {
    my ($u) = @_;
    return unless $> == 0 && $u->{uid} != 0;
    $) = "$u->{gid} $u->{gid}";                 # egid and setgroups()
    POSIX::setgid($u->{gid}) or die "setgid $u->{gid}: $!\n";
    POSIX::setuid($u->{uid}) or die "setuid $u->{uid}: $!\n";
    die "could not drop root privileges\n" if $< == 0 || $> == 0;
    @ENV{qw(USER LOGNAME)} = ($u->{name}) x 2;
}

sub _add_tempdir {
    my ($dir) = @_;
    push @TEMPDIRS, $dir;
    print {_watchdog()} "D $dir\n";
    return $dir;
}

sub scratch_dir {
    my ($tag) = @_;
    return _add_tempdir(tempdir('he-' . ($tag // 'scratch') . '-XXXXXX',
                                TMPDIR => 1, CLEANUP => 0));
}

sub server_dir {
    my ($tag) = @_;
    my $base = $ENV{HETEST_TMPDIR} // File::Spec->tmpdir;
    my $dir = _add_tempdir(tempdir("he-$tag-XXXXXX", DIR => $base,
                                   CLEANUP => 0));
    own($dir);
    chmod 0700, $dir;
    # unix socket paths are limited to 107 bytes
    croak "temp dir $dir is too long for unix sockets; set HETEST_TMPDIR"
        if length($dir) > 70;
    my %u = server_user();
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

sub remove_dir {
    my ($dir) = @_;
    @TEMPDIRS = grep { $_ ne $dir } @TEMPDIRS;
    if ($ENV{HETEST_KEEP}) { _say("HETEST_KEEP: kept $dir") }
    else                   { rmtree($dir, 0, 1) }
}

# ---------------------------------------------------------------------------
# ports

my ($NEXT_PORT, @PORT_LOCKS);

# A lock file per port, held until we exit, so that two test files run in
# parallel with the same HETEST_PORT_BASE do not pick the same port.
sub _claim_port {
    my ($port) = @_;
    my $dir = File::Spec->tmpdir . '/hetest-ports';
    mkdir $dir, 01777 and chmod 01777, $dir;
    sysopen my $fh, "$dir/$port", O_RDONLY | O_CREAT, 0666 or return 1;
    flock $fh, LOCK_EX | LOCK_NB or return 0;
    push @PORT_LOCKS, $fh;
    return 1;
}

sub free_port {
    my $base = $ENV{HETEST_PORT_BASE};
    if (!defined $base || $base eq '') {
        my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0,
                                      Proto => 'tcp', Listen => 1)
            or croak "cannot bind 127.0.0.1:0: $!";
        my $port = $s->sockport;
        close $s;
        return $port;
    }
    croak "HETEST_PORT_BASE=$base is not a port number"
        unless $base =~ /^\d+\z/ && $base >= 1 && $base <= 65535;
    # never the same port twice: one handed out may not be bound yet
    for my $port (($NEXT_PORT // $base) .. 65535) {
        my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1',
            LocalPort => $port, Proto => 'tcp', Listen => 1) or next;
        close $s;
        next unless _claim_port($port);
        $NEXT_PORT = $port + 1;
        return $port;
    }
    croak "no free port from HETEST_PORT_BASE=$base up to 65535";
}

sub closed_port { free_port() }

# Every byte of the answer to one request on a connection of its own
# (to see that a HEAD answer has no body); "connect failed: ..." if none.
sub http_raw {
    my ($host, $port, $method, $path, $timeout) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => $host, PeerPort => $port,
                                  Proto => 'tcp', Timeout => 10)
        or return "connect failed: $!";
    print {$s} "$method $path HTTP/1.1\r\nHost: $host:$port\r\n"
        . "Connection: close\r\n\r\n";
    my $buf = '';
    my $deadline = Time::HiRes::time() + ($timeout // 10);
    my $sel = IO::Select->new($s);
    # a server that stops sending must not hold us past the deadline
    while ((my $left = $deadline - Time::HiRes::time()) > 0) {
        last unless $sel->can_read($left);
        my $n = sysread($s, my $chunk, 65536);
        last unless $n;
        $buf .= $chunk;
    }
    return $buf;
}

sub port_open {
    my ($port, $host) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => $host // '127.0.0.1',
        PeerPort => $port, Proto => 'tcp', Timeout => 1);
    return $s ? 1 : 0;
}

# ---------------------------------------------------------------------------
# processes

# The watchdog outlives us by a moment: it reads process-group ids from a
# pipe ("+pid SIG" when started, "-pid" when stopped) and temp dirs ("D
# dir"), and when the pipe closes (we exited, however that happened) it
# stops the groups still listed and removes the dirs.
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

sub watch   { print {_watchdog()} "+$_[0] ", $_[1] // 'TERM', "\n" }
sub unwatch { print {$WATCHDOG_FH} "-$_[0]\n" if $WATCHDOG_FH }

sub spawn {
    my (%a) = @_;
    my %u = server_user();
    my $as_user = $a{as_user} // 1;
    my $log = $a{log} // '/dev/null';
    my $wd = _watchdog();
    # the child reports a failed exec through this pipe
    pipe(my $er, my $ew) or croak "pipe: $!";
    my $pid = fork // croak "fork: $!";
    if ($pid == 0) {
        close $er;
        close $wd;
        eval {
            $SIG{$_} = 'DEFAULT' for qw(INT TERM HUP PIPE CHLD);
            POSIX::setsid();
            open STDIN, '<', '/dev/null' or die "stdin: $!\n";
            open STDOUT, '>>', $log or die "open $log: $!\n";
            open STDERR, '>&', \*STDOUT or die "stderr: $!\n";
            _drop_privileges(\%u) if $as_user;
            if ($a{dir}) { chdir $a{dir} or die "chdir $a{dir}: $!\n" }
            $ENV{HOME} = $a{dir} if $a{dir} && $as_user;
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
    watch($pid, $a{stop_signal});
    return $pid;
}

sub run_cmd {
    my (%a) = @_;
    my $timeout = delete $a{timeout} // 120;
    my $tail = delete $a{tail};
    my $want_status = delete $a{status};
    my $pid = spawn(%a);
    my $deadline = Time::HiRes::time() + $timeout;
    while (1) {
        my $r = waitpid $pid, WNOHANG;
        if ($r == $pid) {
            my $st = $?;
            unwatch($pid);
            return $st if $want_status;
            return 1 if $st == 0;
            croak "@{$a{cmd}}: exit status " . ($st >> 8)
                . " signal " . ($st & 127) . "\n" . log_tail($a{log}, $tail);
        }
        if (Time::HiRes::time() > $deadline) {
            kill 'KILL', -$pid;
            waitpid $pid, 0;
            unwatch($pid);
            return -1 if $want_status;
            croak "@{$a{cmd}}: no exit after $timeout s\n"
                . log_tail($a{log}, $tail);
        }
        sleep 0.05;
    }
}

# fork() for a server written in Perl: the child gets a session of its own
# and no copy of the watchdog's pipe, which must close when we die.
sub fork_server {
    my (%a) = @_;
    my $wd = _watchdog();
    my $pid = fork // croak "fork: $!";
    if ($pid == 0) {
        close $wd;
        $WATCHDOG_FH = undef;
        $SIG{$_} = 'DEFAULT' for qw(INT TERM HUP CHLD);
        POSIX::setsid();
        return 0;
    }
    watch($pid, $a{stop_signal});
    return $pid;
}

# ---------------------------------------------------------------------------
# the common server object

package HETest::Proc::Server;

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
    *{$f} = sub { $_[0]{$f} };
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
    HETest::Proc::unwatch($self->{pid});
    $self->{pid} = undef;
    return 0;
}

sub log_tail {
    my ($self, $n) = @_;
    return join '', map { HETest::Proc::log_tail($_, $n) }
                    grep { -e } $self->{log}, @{ $self->{extra_logs} || [] };
}

sub start {
    my ($self) = @_;
    return $self if $self->running;
    $self->{pid} = HETest::Proc::spawn(
        map { ($_ => $self->{$_}) } qw(cmd log dir env as_user stop_signal));
    $self->_wait_ready;
    return $self;
}

sub _wait_ready {
    my ($self) = @_;
    my $timeout = $self->{ready_timeout} // $READY_TIMEOUT;
    my $deadline = Time::HiRes::time() + $timeout;
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
            my $msg = "$self->{name} not ready after $timeout s"
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
    kill 'CONT', -$pid or kill 'CONT', $pid;
    kill $self->{stop_signal}, $pid;
    my $deadline = Time::HiRes::time() + $STOP_TIMEOUT;
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
    HETest::Proc::unwatch($pid);
    $self->{pid} = undef;
    # the next start, or a test expecting "refused", needs the port closed
    if ($self->{port}) {
        my $until = Time::HiRes::time() + 10;
        sleep 0.05 while HETest::Proc::port_open($self->{port}, $self->{host})
                         && Time::HiRes::time() < $until;
    }
    return $self;
}

sub _signal {
    my ($self, $sig, %o) = @_;
    kill $sig, $o{group} ? -$self->{pid} : $self->{pid}
        or croak "SIG$sig: $!";
    return $self;
}

sub sigstop { my ($s, %o) = @_; $s->_signal(STOP => %o) }
sub sigcont { my ($s, %o) = @_; $s->_signal(CONT => %o) }

1;
